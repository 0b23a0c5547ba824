package cgroup

import (
	"bytes"
	"math"
	"strconv"
	"sync"
)

// statsV2 writes io.containerd.cgroups.v2.Metrics for the unified cgroup
// dir to p, as cgroups/v3's (*cgroup2.Manager).Stat reports it: pids, CPU,
// memory, IO and RDMA are always there, empty when their files are missing;
// memory events only when memory.events has lines; a PSI message only when
// its pressure file reads and parses. Only a cpu.stat, memory.stat or
// memory.events that is there but cannot be read or parsed fails the call.
func statsV2(r *statReader, dir string, p *pbuf) error {
	s := p.begin(1) // PidsStat
	p.uint(1, r.valueV2(dir, "/pids.current"))
	p.uint(2, r.valueV2(dir, "/pids.max"))
	p.end(s)
	if err := cpuV2(r, dir, p); err != nil {
		return err
	}
	if err := memoryV2(r, dir, p); err != nil {
		return err
	}
	if err := memoryEventsV2(r, dir, p); err != nil {
		return err
	}
	ioV2(r, dir, p)
	s = p.begin(5) // RdmaStat: current, limit
	for i, name := range [...]string{"/rdma.current", "/rdma.max"} {
		if b, err := r.read(dir, name); err == nil {
			rdmaEntries(b, i+1, p)
		}
	}
	p.end(s)
	for _, size := range hugePageSizesV2() {
		s := p.begin(7) // HugeTlbStat
		prefix := dir + "/hugetlb." + size
		p.uint(1, r.valueV2(prefix, ".current"))
		p.uint(2, r.valueV2(prefix, ".max"))
		p.str(3, []byte(size))
		p.uint(4, r.eventsMax(prefix, ".events"))
		p.end(s)
	}
	return nil
}

// valueV2 reads a file holding one number as cgroups/v3 does for cgroup v2:
// from its first 32 bytes, "max" as MaxUint64, and a file that is missing,
// unreadable or not a number as 0.
func (r *statReader) valueV2(path ...string) uint64 {
	b, err := r.read(path...)
	if err != nil {
		return 0
	}
	b = bytes.TrimSpace(b[:min(len(b), 32)])
	if string(b) == "max" {
		return math.MaxUint64
	}
	v, _ := parseUint(b) // 0 on error
	return v
}

// eventsMax is the value of the first "max N" line of a hugetlb events file,
// 0 if there is none or it does not parse.
func (r *statReader) eventsMax(path ...string) uint64 {
	b, err := r.read(path...)
	if err != nil {
		return 0
	}
	var f [2][]byte
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if fields(line, f[:]) == 2 && string(f[0]) == "max" {
			v, _ := parseUint(f[1])
			return v
		}
	}
	return 0
}

// cpuV2 writes the CPUStat message. Without cpu.stat it is empty, without
// PSI either.
func cpuV2(r *statReader, dir string, p *pbuf) error {
	var vals [9]uint64 // by CPUStat field number - 1; 7 is PSI
	keys := []string{"usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled",
		"throttled_usec", "", "nr_bursts", "burst_usec"}
	_, err := r.readKeys(keys, vals[:], dir, "/cpu.stat")
	if err != nil && !notExist(err) {
		return err
	}
	s := p.begin(2)
	if err == nil {
		for i, v := range vals {
			p.uint(i+1, v)
		}
		r.psi(7, p, dir, "/cpu.pressure")
	}
	p.end(s)
	return nil
}

// memStatV2 maps memory.stat keys to MemoryStat field numbers.
var memStatV2 = map[string]int{
	"anon": 1, "file": 2, "kernel_stack": 3, "slab": 4, "sock": 5, "shmem": 6,
	"file_mapped": 7, "file_dirty": 8, "file_writeback": 9, "anon_thp": 10,
	"inactive_anon": 11, "active_anon": 12, "inactive_file": 13, "active_file": 14,
	"unevictable": 15, "slab_reclaimable": 16, "slab_unreclaimable": 17,
	"pgfault": 18, "pgmajfault": 19, "workingset_refault": 20, "workingset_activate": 21,
	"workingset_nodereclaim": 22, "pgrefill": 23, "pgscan": 24, "pgsteal": 25,
	"pgactivate": 26, "pgdeactivate": 27, "pglazyfree": 28, "pglazyfreed": 29,
	"thp_fault_alloc": 30, "thp_collapse_alloc": 31,
}

// memoryV2 writes the MemoryStat message. Without memory.stat it is empty:
// the usage files and PSI are read only along with it.
func memoryV2(r *statReader, dir string, p *pbuf) error {
	b, err := r.read(dir, "/memory.stat")
	if err != nil && !notExist(err) {
		return err
	}
	var vals [32]uint64
	if err == nil {
		if err := keyValues(b, func(k []byte, v uint64) {
			if f, ok := memStatV2[string(k)]; ok {
				vals[f] = v
			}
		}); err != nil {
			return &statError{path: dir + "/memory.stat", err: err}
		}
	}
	s := p.begin(4)
	if err == nil {
		for f := 1; f < len(vals); f++ {
			p.uint(f, vals[f])
		}
		// usage 32, usage_limit 33, swap_usage 34, swap_limit 35, max_usage
		// 36, swap_max_usage 37.
		for i, name := range [...]string{"memory.current", "memory.max", "memory.swap.current",
			"memory.swap.max", "memory.peak", "memory.swap.peak"} {
			p.uint(32+i, r.valueV2(dir, "/", name))
		}
		r.psi(38, p, dir, "/memory.pressure")
	}
	p.end(s)
	return nil
}

// memoryEventsV2 writes MemoryEvents when memory.events has any line.
func memoryEventsV2(r *statReader, dir string, p *pbuf) error {
	var vals [6]uint64 // low, high, max, oom, oom_kill, oom_group_kill
	keys := []string{"low", "high", "max", "oom", "oom_kill", "oom_group_kill"}
	b, err := r.read(dir, "/memory.events")
	if notExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	lines := 0
	err = keyValues(b, func(k []byte, v uint64) {
		lines++
		for i, key := range keys {
			if string(k) == key {
				vals[i] = v
			}
		}
	})
	if err != nil {
		return &statError{path: dir + "/memory.events", err: err}
	}
	if lines == 0 {
		return nil
	}
	s := p.begin(8)
	for i, v := range vals {
		p.uint(i+1, v)
	}
	p.end(s)
	return nil
}

// ioV2 writes the IOStat message: an IOEntry per io.stat line and the PSI.
// Lines are split as cgroups/v3 splits them, at single spaces; a device
// number that does not parse ends the list.
func ioV2(r *statReader, dir string, p *pbuf) {
	s := p.begin(6)
	b, err := r.read(dir, "/io.stat")
	for err == nil && len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		dev, rest, ok := bytes.Cut(line, []byte(" "))
		if !ok {
			continue
		}
		maj, mnr, ok := bytes.Cut(dev, []byte(":"))
		if !ok || bytes.IndexByte(mnr, ':') >= 0 {
			continue
		}
		var major, minor uint64
		if major, err = strconv.ParseUint(string(maj), 10, 64); err != nil {
			break
		}
		if minor, err = strconv.ParseUint(string(mnr), 10, 64); err != nil {
			break
		}
		var vals [4]uint64 // rbytes, wbytes, rios, wios
		for len(rest) > 0 {
			var kv []byte
			kv, rest, _ = bytes.Cut(rest, []byte(" "))
			k, v, ok := bytes.Cut(kv, []byte("="))
			if !ok || bytes.IndexByte(v, '=') >= 0 {
				continue
			}
			x, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				continue
			}
			switch string(k) {
			case "rbytes":
				vals[0] = x
			case "wbytes":
				vals[1] = x
			case "rios":
				vals[2] = x
			case "wios":
				vals[3] = x
			}
		}
		e := p.begin(1)
		p.uint(1, major)
		p.uint(2, minor)
		for i, v := range vals {
			p.uint(3+i, v)
		}
		p.end(e)
	}
	r.psi(2, p, dir, "/io.pressure")
	p.end(s)
}

// psiData is one line of a pressure file.
type psiData struct {
	set                  bool
	avg10, avg60, avg300 float64
	total                uint64
}

// psi writes the PSIStats of a pressure file ("some avg10=0.00 avg60=0.00
// avg300=0.00 total=0", then the same for "full") as field of p, or nothing
// when the file cannot be read or has a value that does not parse.
func (r *statReader) psi(field int, p *pbuf, path ...string) {
	b, err := r.read(path...)
	if err != nil {
		return
	}
	var some, full psiData
	var f [1][]byte
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		line = bytes.TrimLeft(line, " \t")
		if fields(line, f[:]) == 0 {
			continue
		}
		var d *psiData
		switch string(f[0]) {
		case "some":
			d = &some
		case "full":
			d = &full
		default:
			continue
		}
		*d = psiData{set: true}
		rest := line[len(f[0]):]
		for {
			rest = bytes.TrimLeft(rest, " \t")
			if fields(rest, f[:]) == 0 {
				break
			}
			rest = rest[len(f[0]):]
			k, v, ok := bytes.Cut(f[0], []byte("="))
			if !ok {
				return
			}
			var avg *float64
			switch string(k) {
			case "avg10":
				avg = &d.avg10
			case "avg60":
				avg = &d.avg60
			case "avg300":
				avg = &d.avg300
			case "total":
				if d.total, err = strconv.ParseUint(string(v), 10, 64); err != nil {
					return
				}
			}
			if avg != nil {
				if *avg, err = strconv.ParseFloat(string(v), 64); err != nil {
					return
				}
			}
		}
	}
	s := p.begin(field)
	for i, d := range [...]*psiData{&some, &full} {
		if !d.set {
			continue
		}
		e := p.begin(i + 1)
		p.double(1, d.avg10)
		p.double(2, d.avg60)
		p.double(3, d.avg300)
		p.uint(4, d.total)
		p.end(e)
	}
	p.end(s)
}

// hugePageSizesV2 names the host's huge page sizes in the order the
// directory lists them, as cgroups/v3 lists them for cgroup v2.
var hugePageSizesV2 = sync.OnceValue(func() []string { return readHugePageSizes(hugePagesDir, false) })
