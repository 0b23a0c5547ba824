package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup2"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"google.golang.org/protobuf/proto"
)

// libraryV2 is what github.com/containerd/cgroups/v3 reports for the cgroup
// group of the unified hierarchy mounted at root.
func libraryV2(t testing.TB, root, group string) (*v2.Metrics, error) {
	t.Helper()
	m, err := cgroup2.Load(group, cgroup2.WithMountpoint(root))
	if err != nil {
		t.Fatalf("cgroups/v3 load: %v", err)
	}
	return m.Stat()
}

// ourV2 is what the shim reports for the same cgroup.
func ourV2(t testing.TB, root, group string) (*v2.Metrics, error) {
	t.Helper()
	var r statReader
	var p pbuf
	if err := statsV2(&r, root+group, &p); err != nil {
		return nil, err
	}
	var m v2.Metrics
	if err := proto.Unmarshal(p.b, &m); err != nil {
		t.Fatalf("our encoding does not decode: %v", err)
	}
	return &m, nil
}

// compareV2 checks that both readers succeed and agree, and returns ours.
func compareV2(t *testing.T, root, group string) *v2.Metrics {
	t.Helper()
	want, err := libraryV2(t, root, group)
	if err != nil {
		t.Fatalf("cgroups/v3 stat: %v", err)
	}
	got, err := ourV2(t, root, group)
	if err != nil {
		t.Fatalf("statsV2: %v", err)
	}
	sameMetrics(t, want, got)
	return got
}

// v2Keys are the memory.stat keys of Linux 6.x and the older ones that
// cgroups/v3 still reads (workingset_refault, workingset_activate).
var v2Keys = []string{"anon", "file", "kernel", "kernel_stack", "pagetables", "sec_pagetables",
	"percpu", "sock", "vmalloc", "shmem", "zswap", "zswapped", "file_mapped", "file_dirty",
	"file_writeback", "swapcached", "anon_thp", "file_thp", "shmem_thp", "inactive_anon",
	"active_anon", "inactive_file", "active_file", "unevictable", "slab_reclaimable",
	"slab_unreclaimable", "slab", "workingset_refault", "workingset_activate",
	"workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
	"workingset_activate_file", "workingset_restore_anon", "workingset_restore_file",
	"workingset_nodereclaim", "pgdemote_kswapd", "pgdemote_direct", "pgdemote_khugepaged",
	"pgscan", "pgsteal", "pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged",
	"pgsteal_kswapd", "pgsteal_direct", "pgsteal_khugepaged", "pgfault", "pgmajfault",
	"pgrefill", "pgactivate", "pgdeactivate", "pglazyfree", "pglazyfreed", "zswpin", "zswpout",
	"zswpwb", "thp_fault_alloc", "thp_collapse_alloc", "thp_swpout", "thp_swpout_fallback"}

// v2Fixture writes the files of a cgroup v2 directory with every controller
// enabled, in the formats of Linux 6.x. throttled adds the keys the cpu
// controller adds to cpu.stat; limits writes numbers where it has "max".
func v2Fixture(t testing.TB, dir string, throttled, limits bool) {
	put := func(name, content string) {
		write(t, filepath.Join(dir, name), content)
	}
	max := func(v string) string {
		if limits {
			return v + "\n"
		}
		return "max\n"
	}
	for name, content := range map[string]string{
		"cgroup.controllers":    "cpuset cpu io memory hugetlb pids rdma misc\n",
		"cgroup.events":         "populated 1\nfrozen 0\n",
		"cgroup.procs":          "1\n42\n",
		"pids.current":          "7\n",
		"pids.max":              max("1024"),
		"pids.peak":             "12\n",
		"pids.events":           "max 0\n",
		"cpu.pressure":          "some avg10=1.50 avg60=0.75 avg300=0.12 total=123456\nfull avg10=0.00 avg60=0.25 avg300=0.00 total=7890\n",
		"memory.current":        "16777216\n",
		"memory.max":            max("268435456"),
		"memory.high":           "max\n",
		"memory.low":            "0\n",
		"memory.min":            "0\n",
		"memory.peak":           "33554432\n",
		"memory.swap.current":   "4096\n",
		"memory.swap.max":       max("536870912"),
		"memory.swap.peak":      "8192\n",
		"memory.swap.events":    "high 0\nmax 0\nfail 0\n",
		"memory.events":         "low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\noom_group_kill 6\n",
		"memory.events.local":   "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
		"memory.pressure":       "some avg10=0.00 avg60=0.00 avg300=0.00 total=201537\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=83726\n",
		"io.pressure":           "some avg10=2.21 avg60=2.14 avg300=1.71 total=483804011\nfull avg10=0.00 avg60=0.04 avg300=0.06 total=81560789\n",
		"io.max":                "8:0 rbps=max wbps=1048576 riops=max wiops=max\n",
		"io.stat":               "8:0 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n253:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=512 dios=1\n259:3 rbytes=0 wbytes=8192 rios=0 wios=2 dbytes=0 dios=0 cost.vrate=100.00 cost.usage=0 cost.wait=0 cost.indebt=0 cost.indelay=0\n",
		"rdma.current":          "mlx4_0 hca_handle=2 hca_object=2000\nocrdma1 hca_handle=3 hca_object=max\n",
		"rdma.max":              "mlx4_0 hca_handle=max hca_object=max\nocrdma1 hca_handle=10 hca_object=4294967295\n",
		"cpu.weight":            "100\n",
		"cpu.max":               "max 100000\n",
		"cpuset.cpus.effective": "0-3\n",
	} {
		put(name, content)
	}
	cpu := "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnice_usec 12\ncore_sched.force_idle_usec 0\n"
	if throttled {
		cpu += "nr_periods 100\nnr_throttled 7\nthrottled_usec 89012\nnr_bursts 3\nburst_usec 4567\n"
	}
	put("cpu.stat", cpu)
	put("cpu.stat.local", "throttled_usec 0\n")
	var stat strings.Builder
	for i, k := range v2Keys {
		fmt.Fprintf(&stat, "%s %d\n", k, (i+1)*4096+i)
	}
	put("memory.stat", stat.String())
	for i, size := range hugePageSizes() {
		put("hugetlb."+size+".current", fmt.Sprintf("%d\n", 2097152*(i+1)))
		put("hugetlb."+size+".max", max(fmt.Sprint(4194304*(i+1))))
		put("hugetlb."+size+".events", fmt.Sprintf("max %d\n", i+2))
		put("hugetlb."+size+".events.local", "max 0\n")
		put("hugetlb."+size+".rsvd.current", "0\n")
		put("hugetlb."+size+".rsvd.max", "max\n")
		put("hugetlb."+size+".numa_stat", "total=0 N0=0\n")
	}
}

func TestStatsV2MatchesLibraryOnFixture(t *testing.T) {
	for _, c := range []struct{ throttled, limits bool }{{true, false}, {false, true}, {true, true}} {
		t.Run(fmt.Sprintf("throttled=%v,limits=%v", c.throttled, c.limits), func(t *testing.T) {
			root := t.TempDir()
			v2Fixture(t, filepath.Join(root, "pod", "ctr"), c.throttled, c.limits)
			got := compareV2(t, root, "/pod/ctr")
			// The comparison means something only if every part is there.
			if got.Memory.PSI == nil || got.Memory.PSI.Full.Total == 0 || got.Memory.ThpCollapseAlloc == 0 ||
				got.Memory.SwapMaxUsage == 0 || got.CPU.PSI.Some.Avg10 == 0 || got.MemoryEvents.OomGroupKill == 0 ||
				len(got.Io.Usage) != 3 || got.Io.PSI.Full.Avg300 == 0 || len(got.Rdma.Limit) != 2 ||
				got.Pids.Limit == 0 || len(got.Hugetlb) != len(hugePageSizes()) {
				t.Fatalf("fixture not read in full:\n%v", got)
			}
			if c.throttled != (got.CPU.BurstUsec != 0) {
				t.Fatalf("throttling %v, cpu %v", c.throttled, got.CPU)
			}
		})
	}
}

// Files that a kernel or a cgroup may lack: the messages cgroups/v3 always
// sends stay, empty; memory events and PSI go.
func TestStatsV2MissingFiles(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ctr")
	v2Fixture(t, dir, true, false)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		n := e.Name()
		if n != "cpu.stat" && n != "memory.stat" && n != "memory.current" {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := compareV2(t, root, "/ctr")
	if got.Pids == nil || got.Io == nil || got.Rdma == nil || got.MemoryEvents != nil ||
		got.CPU.PSI != nil || got.Memory.PSI != nil || got.Memory.Usage == 0 {
		t.Fatalf("missing files:\n%v", got)
	}

	// Without cpu.stat and memory.stat the CPU and memory messages are
	// empty: no PSI, no usage, though the files are there.
	v2Fixture(t, dir, true, false)
	for _, n := range []string{"cpu.stat", "memory.stat"} {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	got = compareV2(t, root, "/ctr")
	if got.CPU == nil || got.Memory == nil || got.CPU.PSI != nil || got.Memory.Usage != 0 ||
		got.MemoryEvents == nil {
		t.Fatalf("no cpu.stat and memory.stat:\n%v", got)
	}

	// A cgroup that is gone altogether.
	got = compareV2(t, root, "/gone")
	if got.CPU == nil || got.Memory == nil || got.Pids == nil || got.Io == nil || got.Rdma == nil {
		t.Fatalf("no cgroup:\n%v", got)
	}
}

// Contents at the edges: empty files, a PSI file with one line or a value
// that does not parse, odd io.stat lines, numbers out of range.
func TestStatsV2Edges(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string
		check func(*v2.Metrics) bool
	}{
		{"empty memory.events", map[string]string{"memory.events": ""},
			func(m *v2.Metrics) bool { return m.MemoryEvents == nil }},
		{"unknown memory.events keys", map[string]string{"memory.events": "new_event 3\n"},
			func(m *v2.Metrics) bool { return m.MemoryEvents != nil && m.MemoryEvents.Oom == 0 }},
		{"empty pressure", map[string]string{"cpu.pressure": "", "io.pressure": ""},
			func(m *v2.Metrics) bool { return m.CPU.PSI != nil && m.CPU.PSI.Some == nil && m.Io.PSI != nil }},
		{"some only", map[string]string{"cpu.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"},
			func(m *v2.Metrics) bool { return m.CPU.PSI.Some != nil && m.CPU.PSI.Full == nil }},
		{"pressure not parsed", map[string]string{"memory.pressure": "some avg10=x avg60=0.00 avg300=0.00 total=1\n",
			"io.pressure": "some avg10=1.00 total=-1\n", "cpu.pressure": "full avg10\n"},
			func(m *v2.Metrics) bool { return m.Memory.PSI == nil && m.Io.PSI == nil && m.CPU.PSI == nil }},
		{"pressure extra keys", map[string]string{"cpu.pressure": "some\tavg10=1e2 new=x total=5  \nother line\nfull avg300=-0.5\n"},
			func(m *v2.Metrics) bool { return m.CPU.PSI.Some.Avg10 == 100 && m.CPU.PSI.Full.Avg300 == -0.5 }},
		{"io.stat odd lines", map[string]string{"io.stat": "8:0  rbytes=1 wbytes=x rios=2=3 wios=4\n8:0:1 rbytes=5\n\n 9:0 rbytes=6\n7:1\n7:2 \n" +
			"1:2 rbytes=7 rbytes=0\n3:4 rbytes=8\r\n11:0\trbytes=1\nx:1 rbytes=9\n10:0 rbytes=10\n"},
			func(m *v2.Metrics) bool { return len(m.Io.Usage) == 4 }},
		{"io.stat big numbers", map[string]string{"io.stat": "8:0 rbytes=18446744073709551615 wbytes=18446744073709551616\n"},
			func(m *v2.Metrics) bool { return len(m.Io.Usage) == 1 && m.Io.Usage[0].Rbytes == 1<<64-1 }},
		{"single values", map[string]string{"pids.current": "-1\n", "pids.max": "garbage\n", "memory.current": "",
			"memory.peak": "  12345\n", "memory.swap.current": "18446744073709551616\n",
			"memory.swap.peak": strings.Repeat(" ", 30) + "123456\n"},
			func(m *v2.Metrics) bool {
				return m.Pids.Limit == 0 && m.Memory.MaxUsage == 12345 && m.Memory.SwapMaxUsage == 12
			}},
		{"negative in key files", map[string]string{"cpu.stat": "usage_usec -5\nnr_periods 3\n", "memory.events": "oom -1\n"},
			func(m *v2.Metrics) bool { return m.CPU.UsageUsec == 0 && m.CPU.NrPeriods == 3 && m.MemoryEvents != nil }},
		{"rdma odd", map[string]string{"rdma.current": "dev hca_handle=4294967296 hca_object=-1\nshort hca_handle=1\n", "rdma.max": ""},
			func(m *v2.Metrics) bool { return len(m.Rdma.Current) == 1 && len(m.Rdma.Limit) == 0 }},
		{"hugetlb events", func() map[string]string {
			f := map[string]string{}
			for _, size := range hugePageSizes() {
				f["hugetlb."+size+".events"] = "other 1\nmax x\nmax 9\n"
				f["hugetlb."+size+".max"] = "-1\n"
			}
			return f
		}(), func(m *v2.Metrics) bool { return len(m.Hugetlb) == 0 || m.Hugetlb[0].Failcnt == 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "ctr")
			v2Fixture(t, dir, true, true)
			for name, content := range c.files {
				write(t, filepath.Join(dir, name), content)
			}
			if got := compareV2(t, root, "/ctr"); !c.check(got) {
				t.Fatalf("unexpected:\n%v", got)
			}
		})
	}
}

// A cpu.stat, memory.stat or memory.events that does not parse fails the
// call, as with cgroups/v3.
func TestStatsV2Broken(t *testing.T) {
	for _, name := range []string{"cpu.stat", "memory.stat", "memory.events"} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "ctr")
			v2Fixture(t, dir, true, false)
			write(t, filepath.Join(dir, name), "low 1\nhigh\n")
			if _, err := libraryV2(t, root, "/ctr"); err == nil {
				t.Fatal("cgroups/v3 accepted it")
			}
			if m, err := ourV2(t, root, "/ctr"); err == nil {
				t.Fatalf("accepted: %v", m)
			}
		})
	}
}

// TestStatsV2MatchesLibraryOnHost copies this process's cgroup v2 files, if
// the host mounts a unified hierarchy (on a hybrid host only cpu.stat and
// PSI are there), and compares both readers on the copy.
func TestStatsV2MatchesLibraryOnHost(t *testing.T) {
	mount := cgroupRoot
	if !Unified() {
		mount = filepath.Join(cgroupRoot, "unified")
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := parseProcCgroup(b)[""]
	src := filepath.Join(mount, p)
	if !ok || !exists(filepath.Join(src, "cgroup.procs")) {
		t.Skip("no cgroup v2 hierarchy")
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			continue // write-only files, PSI turned off
		}
		write(t, filepath.Join(root, "host", e.Name()), string(data))
	}
	got := compareV2(t, root, "/host")
	if got.CPU.UsageUsec == 0 {
		t.Fatalf("the host copy has no cpu usage: %v", got)
	}
}

// BenchmarkStatsV2 answers Stats for a cgroup v2 fixture with every file
// (b.N calls; compare with BenchmarkStatsV2Library).
func BenchmarkStatsV2(b *testing.B) {
	root := benchFixtureV2(b)
	g := &Group{v2: root + "/pod/ctr"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Stats(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatsV2Library is BenchmarkStatsV2 through cgroups/v3 and
// proto.Marshal, as the shim did before.
func BenchmarkStatsV2Library(b *testing.B) {
	root := benchFixtureV2(b)
	cg, err := cgroup2.Load("/pod/ctr", cgroup2.WithMountpoint(root))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		m, err := cg.Stat()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := proto.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

func benchFixtureV2(b *testing.B) string {
	root := b.TempDir()
	v2Fixture(b, filepath.Join(root, "pod", "ctr"), true, false)
	return root
}

// cgroups/v3 lists the huge page sizes for cgroup v2 in directory order
// (Readdirnames), for cgroup v1 in name order (os.ReadDir).
func TestHugePageSizesOrder(t *testing.T) {
	dir := t.TempDir()
	size := map[string]string{"hugepages-2048kB": "2MB", "hugepages-1048576kB": "1GB",
		"hugepages-64kB": "64KB", "hugepages-16384kB": "16MB"}
	for _, name := range []string{"hugepages-2048kB", "hugepages-1048576kB", "hugepages-64kB", "hugepages-16384kB", "other", "hugepages-5MB"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	names, err := f.Readdirnames(0)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var listed, sorted []string
	for _, n := range names {
		if s, ok := size[n]; ok {
			listed = append(listed, s)
		}
	}
	for _, n := range []string{"hugepages-1048576kB", "hugepages-16384kB", "hugepages-2048kB", "hugepages-64kB"} {
		sorted = append(sorted, size[n])
	}
	if got := readHugePageSizes(dir, false); fmt.Sprint(got) != fmt.Sprint(listed) {
		t.Errorf("directory order: got %v, want %v", got, listed)
	}
	if got := readHugePageSizes(dir, true); fmt.Sprint(got) != fmt.Sprint(sorted) {
		t.Errorf("name order: got %v, want %v", got, sorted)
	}
	if fmt.Sprint(listed) == fmt.Sprint(sorted) {
		t.Logf("this file system lists %v in name order; the test cannot tell the orders apart", names)
	}
}
