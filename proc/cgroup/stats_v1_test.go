package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// v1Controllers are the cgroup v1 controllers with statistics.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "blkio", "pids", "hugetlb", "rdma"}

// libraryV1 is what github.com/containerd/cgroups/v3 reports for the cgroup
// at path under root (one directory per controller) with procfs at proc.
func libraryV1(t *testing.T, root, proc, path string) *v1.Metrics {
	t.Helper()
	hier := func() ([]cgroup1.Subsystem, error) {
		s := []cgroup1.Subsystem{
			cgroup1.NewMemory(root), cgroup1.NewCpu(root), cgroup1.NewCpuacct(root),
			cgroup1.NewBlkio(root, cgroup1.ProcRoot(proc)), cgroup1.NewPids(root), cgroup1.NewRdma(root),
		}
		if h, err := cgroup1.NewHugetlb(root); err == nil {
			s = append(s, h)
		}
		return s, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path), cgroup1.WithHierarchy(hier))
	if err != nil {
		t.Fatalf("cgroups/v3 load: %v", err)
	}
	m, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		t.Fatalf("cgroups/v3 stat: %v", err)
	}
	return m
}

// ourV1 is what the shim reports for the same cgroup.
func ourV1(t *testing.T, root, proc, path string) *v1.Metrics {
	t.Helper()
	old := procRoot
	procRoot = proc
	defer func() { procRoot = old }()
	var d v1Dirs
	for _, c := range []struct {
		name string
		dir  *string
	}{
		{"memory", &d.memory}, {"cpu", &d.cpu}, {"cpuacct", &d.cpuacct}, {"blkio", &d.blkio},
		{"pids", &d.pids}, {"hugetlb", &d.hugetlb}, {"rdma", &d.rdma},
	} {
		if dir := filepath.Join(root, c.name, path); exists(dir) {
			*c.dir = dir
		}
	}
	var r statReader
	var p pbuf
	if err := statsV1(&r, &d, &p); err != nil {
		t.Fatalf("statsV1: %v", err)
	}
	var m v1.Metrics
	if err := proto.Unmarshal(p.b, &m); err != nil {
		t.Fatalf("our encoding does not decode: %v", err)
	}
	return &m
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func sameMetrics(t *testing.T, want, got proto.Message) {
	t.Helper()
	if !proto.Equal(want, got) {
		t.Errorf("metrics differ\ncgroups/v3:\n%s\nours:\n%s", prototext.Format(want), prototext.Format(got))
	}
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStatsV1MatchesLibraryOnHost copies this process's own cgroup v1 files
// (whatever the host has mounted) and compares both readers on the copy.
func TestStatsV1MatchesLibraryOnHost(t *testing.T) {
	if Unified() {
		t.Skip("host runs cgroup v2 only")
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	paths := parseProcCgroup(b)
	root, proc := t.TempDir(), t.TempDir()
	copied := 0
	for _, c := range v1Controllers {
		p, ok := paths[c]
		src := filepath.Join(cgroupRoot, c, p)
		if !ok || !exists(src) {
			continue
		}
		ents, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			data, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				continue // write-only files
			}
			write(t, filepath.Join(root, c, "host", e.Name()), string(data))
			copied++
		}
	}
	if copied == 0 {
		t.Skip("no cgroup v1 controller with statistics mounted")
	}
	parts, err := os.ReadFile("/proc/partitions")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(proc, "partitions"), string(parts))
	want, got := libraryV1(t, root, proc, "/host"), ourV1(t, root, proc, "/host")
	if want.Memory == nil || want.CPU.Usage.Total == 0 {
		t.Fatalf("the host copy has no memory or cpu usage: %v", want)
	}
	sameMetrics(t, want, got)
}

// v1Fixture writes a cgroup with every controller and every file the
// readers know, in the formats the kernel uses.
func v1Fixture(t testing.TB, root, proc string, cfq bool) {
	dir := func(c string) string { return filepath.Join(root, c, "pod", "ctr") }
	var stat strings.Builder
	for i, k := range []string{"cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback",
		"swap", "pgpgin", "pgpgout", "pgfault", "pgmajfault", "inactive_anon", "active_anon",
		"inactive_file", "active_file", "unevictable", "hierarchical_memory_limit",
		"hierarchical_memsw_limit", "total_cache", "total_rss", "total_rss_huge", "total_shmem",
		"total_mapped_file", "total_dirty", "total_writeback", "total_swap", "total_pgpgin",
		"total_pgpgout", "total_pgfault", "total_pgmajfault", "total_inactive_anon",
		"total_active_anon", "total_inactive_file", "total_active_file", "total_unevictable"} {
		fmt.Fprintf(&stat, "%s %d\n", k, (i+1)*4096+i)
	}
	write(t, filepath.Join(dir("memory"), "memory.stat"), stat.String())
	write(t, filepath.Join(dir("memory"), "memory.oom_control"), "oom_kill_disable 0\nunder_oom 1\noom_kill 3\n")
	for i, mod := range []string{"memory.", "memory.memsw.", "memory.kmem.", "memory.kmem.tcp."} {
		write(t, filepath.Join(dir("memory"), mod+"usage_in_bytes"), fmt.Sprintf("%d\n", 1000+i))
		write(t, filepath.Join(dir("memory"), mod+"max_usage_in_bytes"), fmt.Sprintf("%d\n", 2000+i))
		write(t, filepath.Join(dir("memory"), mod+"failcnt"), fmt.Sprintf("%d\n", i))
		write(t, filepath.Join(dir("memory"), mod+"limit_in_bytes"), "9223372036854771712\n")
	}
	write(t, filepath.Join(dir("cpu"), "cpu.stat"), "nr_periods 10\nnr_throttled 2\nthrottled_time 123456789\n")
	write(t, filepath.Join(dir("cpuacct"), "cpuacct.stat"), "user 250\nsystem 75\n")
	write(t, filepath.Join(dir("cpuacct"), "cpuacct.usage"), "3812345678\n")
	write(t, filepath.Join(dir("cpuacct"), "cpuacct.usage_percpu"), "1812345678 2000000000 0 \n")
	write(t, filepath.Join(dir("pids"), "pids.current"), "7\n")
	write(t, filepath.Join(dir("pids"), "pids.max"), "max\n")
	for _, size := range hugePageSizes() {
		write(t, filepath.Join(dir("hugetlb"), "hugetlb."+size+".usage_in_bytes"), "2097152\n")
		write(t, filepath.Join(dir("hugetlb"), "hugetlb."+size+".max_usage_in_bytes"), "4194304\n")
		write(t, filepath.Join(dir("hugetlb"), "hugetlb."+size+".failcnt"), "1\n")
	}
	write(t, filepath.Join(dir("rdma"), "rdma.current"), "mlx4_0 hca_handle=2 hca_object=2000\nocrdma1 hca_handle=3 hca_object=max\n")
	write(t, filepath.Join(dir("rdma"), "rdma.max"), "mlx4_0 hca_handle=max hca_object=max\nocrdma1 hca_handle=10 hca_object=20\n")
	write(t, filepath.Join(proc, "partitions"), "major minor  #blocks  name\n\n 254        0  268435456 vda\n   8       16   1048576 sdb\n")
	blk := "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 0\n254:0 Async 12288\n254:0 Discard 0\n254:0 Total 12288\n8:32 Read 1\nTotal 12289\n"
	for _, f := range []string{"io_service_bytes_recursive", "io_serviced_recursive", "io_queued_recursive",
		"io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive"} {
		content := blk
		if !cfq {
			content = ""
		}
		write(t, filepath.Join(dir("blkio"), "blkio."+f), content)
	}
	sectors := "254:0 24\n8:16 1\n"
	if !cfq {
		sectors = ""
	}
	write(t, filepath.Join(dir("blkio"), "blkio.time_recursive"), sectors)
	write(t, filepath.Join(dir("blkio"), "blkio.sectors_recursive"), sectors)
	write(t, filepath.Join(dir("blkio"), "blkio.throttle.io_serviced"), "254:0 Read 3\n254:0 Write 4\nTotal 7\n")
	write(t, filepath.Join(dir("blkio"), "blkio.throttle.io_service_bytes"), "254:0 Read 12288\n254:0 Write 16384\n8:16 Read 512\nTotal 29184\n")
}

func TestStatsV1MatchesLibraryOnFixture(t *testing.T) {
	for _, cfq := range []bool{true, false} {
		t.Run(fmt.Sprintf("cfq=%v", cfq), func(t *testing.T) {
			root, proc := t.TempDir(), t.TempDir()
			v1Fixture(t, root, proc, cfq)
			want, got := libraryV1(t, root, proc, "/pod/ctr"), ourV1(t, root, proc, "/pod/ctr")
			if want.Rdma == nil || want.Blkio == nil || len(want.Blkio.IoServicedRecursive) == 0 || want.Pids == nil {
				t.Fatalf("fixture not read in full by cgroups/v3: %v", want)
			}
			sameMetrics(t, want, got)
		})
	}
}

// A controller that is not there is left out; one whose files are broken
// fails the call, as with cgroups/v3.
func TestStatsV1MissingAndBroken(t *testing.T) {
	root, proc := t.TempDir(), t.TempDir()
	v1Fixture(t, root, proc, true)
	if err := os.RemoveAll(filepath.Join(root, "blkio")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "pids", "pod", "ctr", "pids.max")); err != nil {
		t.Fatal(err)
	}
	want, got := libraryV1(t, root, proc, "/pod/ctr"), ourV1(t, root, proc, "/pod/ctr")
	if got.Blkio != nil || got.Pids != nil || got.Memory == nil {
		t.Fatalf("missing controllers: blkio %v pids %v memory %v", got.Blkio, got.Pids, got.Memory)
	}
	sameMetrics(t, want, got)

	write(t, filepath.Join(root, "memory", "pod", "ctr", "memory.stat"), "cache 1\nrss\n")
	d := v1Dirs{memory: filepath.Join(root, "memory", "pod", "ctr")}
	var r statReader
	var p pbuf
	if err := statsV1(&r, &d, &p); err == nil {
		t.Fatal("a malformed memory.stat was accepted")
	}
}

func TestPbufLongMessage(t *testing.T) {
	var p pbuf
	s := p.begin(4)
	for i := 1; i <= 32; i++ {
		p.uint(i, 1<<40+uint64(i))
	}
	p.end(s)
	var m v1.Metrics
	if err := proto.Unmarshal(p.b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Memory.Cache != 1<<40+1 || m.Memory.TotalUnevictable != 1<<40+32 {
		t.Fatalf("decoded %v", m.Memory)
	}
}

func TestParseProcCgroup(t *testing.T) {
	got := parseProcCgroup([]byte("12:cpu,cpuacct:/kubepods/pod1/c1\n4:memory:/kubepods/pod1/c1\n1:name=systemd:/x\n0::/unified/path\n"))
	for k, v := range map[string]string{"cpu": "/kubepods/pod1/c1", "cpuacct": "/kubepods/pod1/c1",
		"memory": "/kubepods/pod1/c1", "name=systemd": "/x", "": "/unified/path"} {
		if got[k] != v {
			t.Errorf("%q: got %q, want %q", k, got[k], v)
		}
	}
}

// BenchmarkStats reads this process's own cgroup the way the shim answers
// Stats (b.N calls; compare allocs/op with BenchmarkStatsLibrary).
func BenchmarkStats(b *testing.B) {
	g, err := Load(os.Getpid())
	if err != nil {
		b.Skip(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := g.Stats(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatsLibrary is BenchmarkStats through cgroups/v3 and
// proto.Marshal, as the shim did before.
func BenchmarkStatsLibrary(b *testing.B) {
	if Unified() {
		b.Skip("cgroup v1 only")
	}
	cg, err := cgroup1.Load(cgroup1.PidPath(os.Getpid()))
	if err != nil {
		b.Skip(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m, err := cg.Stat(cgroup1.IgnoreNotExist)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := proto.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

// The Any's type URLs are the ones typeurl gives the cgroups/v3 messages,
// which is what containerd and CRI decode by.
func TestMetricsTypeURLs(t *testing.T) {
	for _, c := range []struct {
		ours string
		msg  proto.Message
	}{{metricsV1URL, &v1.Metrics{}}, {metricsV2URL, &v2.Metrics{}}} {
		want, err := typeurl.TypeURL(c.msg)
		if err != nil {
			t.Fatal(err)
		}
		if c.ours != want {
			t.Errorf("type URL %q, typeurl says %q", c.ours, want)
		}
	}
}
