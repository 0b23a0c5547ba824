package cgroup

import (
	"bytes"
	"path/filepath"
	"strconv"
	"sync"
)

// v1Dirs are a container's directories in the cgroup v1 hierarchies that
// have statistics; "" where the controller is not mounted or the container
// has no cgroup there.
type v1Dirs struct {
	memory, cpu, cpuacct, blkio, pids, hugetlb, rdma string
}

// statsV1 writes io.containerd.cgroups.v1.Metrics for the cgroup in d to p.
// A controller whose files are missing is left out, as cgroups/v3 does with
// IgnoreNotExist; any other error fails the call.
func statsV1(r *statReader, d *v1Dirs, p *pbuf) error {
	if err := cpuV1(r, d, p); err != nil {
		return err
	}
	for _, c := range [...]struct {
		dir  string
		read func(*statReader, string, *pbuf) error
	}{
		{d.hugetlb, hugetlbV1}, {d.pids, pidsV1}, {d.memory, memoryV1},
		{d.blkio, blkioV1}, {d.rdma, rdmaV1}, {d.memory, oomControlV1},
	} {
		if c.dir == "" {
			continue
		}
		if err := skipMissing(c.read(r, c.dir, p)); err != nil {
			return err
		}
	}
	return nil
}

// skipMissing drops a controller's error when its files are not there.
func skipMissing(err error) error {
	if err != nil && notExist(err) {
		return nil
	}
	return err
}

// section writes one optional message field: fn's output, or nothing at all
// when fn fails.
func section(p *pbuf, field int, fn func() error) error {
	mark := len(p.b)
	s := p.begin(field)
	if err := fn(); err != nil {
		p.b = p.b[:mark]
		return err
	}
	p.end(s)
	return nil
}

func hugetlbV1(r *statReader, dir string, p *pbuf) error {
	mark := len(p.b)
	for _, size := range hugePageSizes() {
		err := section(p, 1, func() error {
			for i, name := range [...]string{"usage_in_bytes", "max_usage_in_bytes", "failcnt"} {
				v, err := r.readUint(dir, "/hugetlb.", size, ".", name)
				if err != nil {
					return err
				}
				p.uint(i+1, v)
			}
			p.str(4, []byte(size))
			return nil
		})
		if err != nil {
			p.b = p.b[:mark]
			return err
		}
	}
	return nil
}

func pidsV1(r *statReader, dir string, p *pbuf) error {
	return section(p, 2, func() error {
		current, err := r.readUint(dir, "/pids.current")
		if err != nil {
			return err
		}
		limit, err := r.readUint(dir, "/pids.max")
		if err != nil {
			return err
		}
		p.uint(1, current)
		p.uint(2, limit)
		return nil
	})
}

// cpuV1 writes the CPU message, which cgroups/v3 always sends, with an
// empty usage and throttling when cpu and cpuacct are missing.
func cpuV1(r *statReader, d *v1Dirs, p *pbuf) error {
	var (
		usage    [3]uint64 // total, kernel, user
		percpu   []uint64
		throttle [3]uint64
	)
	if d.cpuacct != "" {
		if err := skipMissing(cpuacctV1(r, d.cpuacct, &usage, &percpu)); err != nil {
			return err
		}
	}
	if d.cpu != "" {
		_, err := r.readKeys([]string{"nr_periods", "nr_throttled", "throttled_time"}, throttle[:], d.cpu, "/cpu.stat")
		if err := skipMissing(err); err != nil {
			return err
		}
	}
	s := p.begin(3)
	u := p.begin(1)
	for i, v := range usage {
		p.uint(i+1, v)
	}
	p.packed(4, percpu)
	p.end(u)
	t := p.begin(2)
	for i, v := range throttle {
		p.uint(i+1, v)
	}
	p.end(t)
	p.end(s)
	return nil
}

// cpuacctV1 reads the usage counters; user and system time come in clock
// ticks, which the metrics carry in nanoseconds.
func cpuacctV1(r *statReader, dir string, usage *[3]uint64, percpu *[]uint64) error {
	var us [2]uint64 // user, system
	if n, err := r.readKeys([]string{"user", "system"}, us[:], dir, "/cpuacct.stat"); err != nil {
		return err
	} else if n != 2 {
		return &statError{path: dir + "/cpuacct.stat", err: errFormat}
	}
	user, system := us[0], us[1]
	total, err := r.readUint(dir, "/cpuacct.usage")
	if err != nil {
		return err
	}
	b, err := r.read(dir, "/cpuacct.usage_percpu")
	if err != nil {
		return err
	}
	var f [1][]byte
	for len(b) > 0 {
		b = bytes.TrimLeft(b, " \t\n")
		n := fields(b, f[:])
		if n == 0 {
			break
		}
		v, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return &statError{path: dir + "/cpuacct.usage_percpu", err: err}
		}
		*percpu = append(*percpu, v)
		b = b[len(f[0]):]
	}
	const nsPerSecond = 1_000_000_000
	usage[0] = total
	usage[1] = system * nsPerSecond / clockTicks
	usage[2] = user * nsPerSecond / clockTicks
	return nil
}

// clockTicks is USER_HZ, the unit of cpuacct.stat; 100 on every Linux
// architecture containerd runs on.
const clockTicks = 100

// memStatV1 maps memory.stat keys to MemoryStat field numbers.
var memStatV1 = map[string]int{
	"cache": 1, "rss": 2, "rss_huge": 3, "mapped_file": 4, "dirty": 5, "writeback": 6,
	"pgpgin": 7, "pgpgout": 8, "pgfault": 9, "pgmajfault": 10,
	"inactive_anon": 11, "active_anon": 12, "inactive_file": 13, "active_file": 14,
	"unevictable": 15, "hierarchical_memory_limit": 16, "hierarchical_memsw_limit": 17,
	"total_cache": 18, "total_rss": 19, "total_rss_huge": 20, "total_mapped_file": 21,
	"total_dirty": 22, "total_writeback": 23, "total_pgpgin": 24, "total_pgpgout": 25,
	"total_pgfault": 26, "total_pgmajfault": 27, "total_inactive_anon": 28,
	"total_active_anon": 29, "total_inactive_file": 30, "total_active_file": 31,
	"total_unevictable": 32,
}

func memoryV1(r *statReader, dir string, p *pbuf) error {
	return section(p, 4, func() error {
		b, err := r.read(dir, "/memory.stat")
		if err != nil {
			return err
		}
		var vals [33]uint64
		if err := keyValues(b, func(k []byte, v uint64) {
			if f, ok := memStatV1[string(k)]; ok {
				vals[f] = v
			}
		}); err != nil {
			return &statError{path: dir + "/memory.stat", err: err}
		}
		for f := 1; f < len(vals); f++ {
			p.uint(f, vals[f])
		}
		// usage (33), swap (34), kernel (35), kernel_tcp (36): MemoryEntry
		// {limit 1, usage 2, max 3, failcnt 4}. Swap accounting may be off,
		// then memsw files do not exist and swap stays empty.
		for i, module := range [...]string{"memory.", "memory.memsw.", "memory.kmem.", "memory.kmem.tcp."} {
			e := p.begin(33 + i)
			for j, name := range [...]string{"limit_in_bytes", "usage_in_bytes", "max_usage_in_bytes", "failcnt"} {
				v, err := r.readUint(dir, "/", module, name)
				if err != nil && i == 1 && notExist(err) {
					break
				}
				if err != nil {
					return err
				}
				p.uint(j+1, v)
			}
			p.end(e)
		}
		return nil
	})
}

func oomControlV1(r *statReader, dir string, p *pbuf) error {
	return section(p, 9, func() error {
		var vals [3]uint64
		keys := []string{"oom_kill_disable", "under_oom", "oom_kill"}
		if _, err := r.readKeys(keys, vals[:], dir, "/memory.oom_control"); err != nil {
			return err
		}
		for i, v := range vals {
			p.uint(i+1, v)
		}
		return nil
	})
}

// blkioV1 writes the recursive CFQ counters, or the throttle counters when
// the CFQ ones are absent or empty (no device uses CFQ).
func blkioV1(r *statReader, dir string, p *pbuf) error {
	return section(p, 5, func() error {
		devs, err := blockDevices(r)
		if err != nil {
			return err
		}
		mark := len(p.b)
		if _, err := r.read(dir, "/blkio.io_serviced_recursive"); err == nil {
			// BlkIOStat field numbers of the CFQ files.
			for _, f := range [...]struct {
				name  string
				field int
			}{
				{"sectors_recursive", 8}, {"io_service_bytes_recursive", 1},
				{"io_serviced_recursive", 2}, {"io_queued_recursive", 3},
				{"io_service_time_recursive", 4}, {"io_wait_time_recursive", 5},
				{"io_merged_recursive", 6}, {"time_recursive", 7},
			} {
				if err := blkioEntries(r, f.field, devs, p, dir, "/blkio.", f.name); err != nil {
					return err
				}
			}
		}
		if len(p.b) > mark {
			return nil
		}
		if err := blkioEntries(r, 2, devs, p, dir, "/blkio.throttle.io_serviced"); err != nil {
			return err
		}
		return blkioEntries(r, 1, devs, p, dir, "/blkio.throttle.io_service_bytes")
	})
}

// blkioEntries writes one BlkIOEntry per "major:minor [op] value" line.
func blkioEntries(r *statReader, field int, devs map[[2]uint64]string, p *pbuf, path ...string) error {
	b, err := r.read(path...)
	if err != nil {
		return err
	}
	var f [4][]byte
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		n := fieldsSep(line, f[:], ':')
		if n == 0 || (n == 2 && string(f[0]) == "Total") {
			continue
		}
		if n < 3 {
			return newStatError(path, errFormat)
		}
		// "major minor op value", else "major minor value" and whatever
		// follows it, as cgroups/v3 reads it.
		value := 2
		if n == 4 {
			value = 3
		}
		var nums [3]uint64
		for i, idx := range [...]int{0, 1, value} {
			if nums[i], err = strconv.ParseUint(string(f[idx]), 10, 64); err != nil {
				return newStatError(path, err)
			}
		}
		e := p.begin(field)
		if n == 4 {
			p.str(1, f[2])
		}
		p.str(2, []byte(devs[[2]uint64{nums[0], nums[1]}]))
		p.uint(3, nums[0])
		p.uint(4, nums[1])
		p.uint(5, nums[2])
		p.end(e)
	}
	return nil
}

// blockDevices maps major:minor to /dev/NAME from /proc/partitions. The
// file is read on every call, but parsed again only when it changed.
func blockDevices(r *statReader) (map[[2]uint64]string, error) {
	b, err := r.read(procRoot, "/partitions")
	if err != nil {
		return nil, err
	}
	devCache.Lock()
	defer devCache.Unlock()
	raw := b
	if devCache.m != nil && bytes.Equal(devCache.raw, b) {
		return devCache.m, nil
	}
	m := make(map[[2]uint64]string)
	var f [4][]byte
	for i := 0; len(b) > 0; i++ {
		var line []byte
		line, b = nextLine(b)
		if i < 2 {
			continue
		}
		if fields(line, f[:]) < 4 {
			continue
		}
		// Numbers and names as cgroups/v3 reads them: signed, the name
		// joined to /dev as a path.
		major, err1 := strconv.Atoi(string(f[0]))
		minor, err2 := strconv.Atoi(string(f[1]))
		if err1 != nil || err2 != nil {
			return nil, &statError{path: procRoot + "/partitions", err: errFormat}
		}
		k := [2]uint64{uint64(major), uint64(minor)}
		if _, ok := m[k]; !ok {
			m[k] = filepath.Join("/dev", string(f[3]))
		}
	}
	devCache.raw = append(devCache.raw[:0], raw...)
	devCache.m = m
	return m, nil
}

var devCache struct {
	sync.Mutex
	raw []byte
	m   map[[2]uint64]string
}

// procRoot is where procfs is mounted; tests point it elsewhere.
var procRoot = "/proc"

func rdmaV1(r *statReader, dir string, p *pbuf) error {
	cur, err := r.read(dir, "/rdma.current")
	if err != nil {
		return err
	}
	cur = append([]byte(nil), cur...)
	limit, err := r.read(dir, "/rdma.max")
	if err != nil {
		return err
	}
	// A device removed between the two reads: no rdma stats this time.
	if bytes.Count(cur, []byte("\n")) != bytes.Count(limit, []byte("\n")) {
		return nil
	}
	return section(p, 6, func() error {
		rdmaEntries(cur, 1, p)
		rdmaEntries(limit, 2, p)
		return nil
	})
}

// rdmaEntries writes an RdmaEntry per "dev hca_handle=N hca_object=N" line.
func rdmaEntries(b []byte, field int, p *pbuf) {
	var f [3][]byte
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if fields(line, f[:]) != 3 {
			continue
		}
		e := p.begin(field)
		p.str(1, f[0])
		for _, kv := range f[1:] {
			k, v, ok := bytes.Cut(kv, []byte("="))
			if !ok {
				continue
			}
			var n uint64
			if string(v) == "max" {
				n = 1<<32 - 1
			} else if x, err := parseUint(v); err == nil && x <= 1<<32-1 {
				n = x
			} else {
				continue
			}
			switch string(k) {
			case "hca_handle":
				p.uint(2, n)
			case "hca_object":
				p.uint(3, n)
			}
		}
		p.end(e)
	}
}

// hugePageSizes names the host's huge page sizes in name order, as
// cgroups/v3 lists them for cgroup v1.
var hugePageSizes = sync.OnceValue(func() []string { return readHugePageSizes(hugePagesDir, true) })
