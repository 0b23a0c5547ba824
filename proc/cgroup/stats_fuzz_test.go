package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/cgroups/v3/cgroup2"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/log"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// The stats fuzz targets start from a fixture with every file the readers
// know, put fuzzed content into two of them (picked by index) and compare
// the encoder with cgroups/v3 on the result. Always: no panic, and an
// encoding that decodes. Where the library answers and the content is
// what a kernel could write (printable ASCII, tabs and newlines: the
// library's line scanner drops a carriage return, and strings.Fields splits
// at Unicode spaces, where we do not), we answer too, with the same
// metrics. Where the library fails we may still answer: it refuses some
// content we read (a blank line), and it panics on some (a blank line in a
// pressure file, cgroups/v3 v3.1.3), which is not ours to test.

// fuzzFiles lets a fuzz target overwrite files of a fixture and puts them
// back after each input.
type fuzzFiles struct {
	root  string
	names []string
	saved map[string][]byte
}

func newFuzzFiles(f *testing.F, root string, names []string) *fuzzFiles {
	ff := &fuzzFiles{root: root, names: names, saved: map[string][]byte{}}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(root, n))
		if err != nil {
			f.Fatal(err)
		}
		ff.saved[n] = b
	}
	return ff
}

// set writes content to the file picked by i; restore undoes every set.
func (ff *fuzzFiles) set(t *testing.T, i uint8, content []byte) string {
	n := ff.names[int(i)%len(ff.names)]
	if err := os.WriteFile(filepath.Join(ff.root, n), content, 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

func (ff *fuzzFiles) restore(t *testing.T) {
	for n, b := range ff.saved {
		if err := os.WriteFile(filepath.Join(ff.root, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// agree fails t if the library answered and we did not, or differently.
func agree(t *testing.T, what string, want, got proto.Message, wantErr, gotErr error) {
	t.Helper()
	switch {
	case wantErr != nil:
	case gotErr != nil:
		t.Fatalf("%s: we fail (%v), cgroups/v3 answers\n%s", what, gotErr, prototext.Format(want))
	case !proto.Equal(want, got):
		t.Fatalf("%s: metrics differ\ncgroups/v3:\n%s\nours:\n%s", what, prototext.Format(want), prototext.Format(got))
	}
}

// kernelLike reports whether b is made of what cgroup files hold:
// printable ASCII, tabs and newlines.
func kernelLike(b ...[]byte) bool {
	for _, s := range b {
		for _, c := range s {
			if (c < 0x20 || c > 0x7e) && c != '\t' && c != '\n' {
				return false
			}
		}
	}
	return true
}

// errPanicked stands for an answer the library did not give: it panicked.
var errPanicked = errors.New("cgroups/v3 panicked")

// noPanic turns a panic of the library into errPanicked.
func noPanic(err *error) {
	if recover() != nil {
		*err = errPanicked
	}
}

// v1FuzzFiles are the files of v1Fixture the v1 encoder reads.
func v1FuzzFiles() []string {
	names := []string{"proc/partitions"}
	for c, files := range map[string][]string{
		"memory": {"memory.stat", "memory.oom_control", "memory.usage_in_bytes", "memory.limit_in_bytes",
			"memory.memsw.failcnt", "memory.kmem.tcp.max_usage_in_bytes"},
		"cpu":     {"cpu.stat"},
		"cpuacct": {"cpuacct.stat", "cpuacct.usage", "cpuacct.usage_percpu"},
		"pids":    {"pids.current", "pids.max"},
		"rdma":    {"rdma.current", "rdma.max"},
		"blkio": {"blkio.io_serviced_recursive", "blkio.io_service_bytes_recursive", "blkio.sectors_recursive",
			"blkio.time_recursive", "blkio.throttle.io_serviced", "blkio.throttle.io_service_bytes"},
	} {
		for _, n := range files {
			names = append(names, filepath.Join("cg", c, "pod", "ctr", n))
		}
	}
	for _, size := range hugePageSizes() {
		names = append(names, filepath.Join("cg", "hugetlb", "pod", "ctr", "hugetlb."+size+".usage_in_bytes"))
	}
	sort.Strings(names)
	return names
}

func FuzzStatsV1(f *testing.F) {
	quietLog(f) // cgroups/v3 logs what it cannot parse
	base := f.TempDir()
	root, procDir := filepath.Join(base, "cg"), filepath.Join(base, "proc")
	v1Fixture(f, root, procDir, true)
	old := procRoot
	procRoot = procDir
	f.Cleanup(func() { procRoot = old })
	ff := newFuzzFiles(f, base, v1FuzzFiles())
	for i, n := range ff.names {
		f.Add(uint8(i), ff.saved[n], uint8(0), ff.saved[ff.names[0]])
		f.Add(uint8(i), []byte(""), uint8(i+1), []byte("x 1\n"))
	}
	parts := uint8(sort.SearchStrings(ff.names, "proc/partitions"))
	f.Add(parts, []byte("major minor  #blocks  name\n\n 8 0 1 sda\n"), uint8(1), []byte("8:0 Read 1\n8:0 Write 2\n"))
	f.Add(parts, []byte("\n\n-1 0 1 x\n"), uint8(0), []byte{})
	// Numbers and names as the library reads them: signed, joined as paths.
	f.Add(parts, []byte("major minor  #blocks  name\n\n+254 0 1 ../vda\n 8 16 1 a/../sdb\n"), parts, []byte{})
	f.Fuzz(func(t *testing.T, a uint8, ac []byte, b uint8, bc []byte) {
		defer ff.restore(t)
		what := ff.set(t, a, ac) + ", " + ff.set(t, b, bc)
		got, gotErr := statV1Ours(t, root, "/pod/ctr")
		if kernelLike(ac, bc) && libraryReadsPartitions(filepath.Join(base, "proc", "partitions")) {
			want, wantErr := statV1Library(root, procDir, "/pod/ctr")
			agree(t, what, want, got, wantErr, gotErr)
		}
	})
}

// libraryReadsPartitions reports whether cgroups/v3 can read the
// partitions file at path: it panics (in a goroutine of its own, out of a
// test's reach) on a device line of fewer than four fields, which we skip.
func libraryReadsPartitions(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return true
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	for i := 2; i < len(lines); i++ {
		if len(strings.Fields(lines[i])) < 4 {
			return false
		}
	}
	return true
}

func statV1Library(root, procDir, path string) (m *v1.Metrics, err error) {
	defer noPanic(&err)
	hier := func() ([]cgroup1.Subsystem, error) {
		s := []cgroup1.Subsystem{
			cgroup1.NewMemory(root), cgroup1.NewCpu(root), cgroup1.NewCpuacct(root),
			cgroup1.NewBlkio(root, cgroup1.ProcRoot(procDir)), cgroup1.NewPids(root), cgroup1.NewRdma(root),
		}
		if h, err := cgroup1.NewHugetlb(root); err == nil {
			s = append(s, h)
		}
		return s, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path), cgroup1.WithHierarchy(hier))
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return cg.Stat(cgroup1.IgnoreNotExist)
}

func statV1Ours(t *testing.T, root, path string) (*v1.Metrics, error) {
	var d v1Dirs
	for _, c := range []struct {
		name string
		dir  *string
	}{
		{"memory", &d.memory}, {"cpu", &d.cpu}, {"cpuacct", &d.cpuacct}, {"blkio", &d.blkio},
		{"pids", &d.pids}, {"hugetlb", &d.hugetlb}, {"rdma", &d.rdma},
	} {
		*c.dir = filepath.Join(root, c.name, path)
	}
	var r statReader
	var p pbuf
	if err := statsV1(&r, &d, &p); err != nil {
		return nil, err
	}
	var m v1.Metrics
	if err := proto.Unmarshal(p.b, &m); err != nil {
		t.Fatalf("our encoding does not decode: %v", err)
	}
	return &m, nil
}

// v2FuzzFiles are the files of v2Fixture the v2 encoder reads.
func v2FuzzFiles() []string {
	names := []string{"pids.current", "pids.max", "cpu.stat", "cpu.pressure", "memory.stat",
		"memory.current", "memory.max", "memory.swap.current", "memory.swap.max", "memory.peak",
		"memory.swap.peak", "memory.events", "memory.pressure", "io.stat", "io.pressure",
		"rdma.current", "rdma.max"}
	for _, size := range hugePageSizes() {
		for _, suffix := range []string{".current", ".max", ".events"} {
			names = append(names, "hugetlb."+size+suffix)
		}
	}
	return names
}

func FuzzStatsV2(f *testing.F) {
	quietLog(f)
	root := f.TempDir()
	dir := filepath.Join(root, "ctr")
	v2Fixture(f, dir, true, true)
	ff := newFuzzFiles(f, dir, v2FuzzFiles())
	for i, n := range ff.names {
		f.Add(uint8(i), ff.saved[n], uint8(0), ff.saved[ff.names[0]])
		f.Add(uint8(i), []byte(""), uint8(i+1), []byte("some avg10=x\n"))
	}
	f.Add(uint8(13), []byte("8:0  rbytes=1 wbytes=x rios=2=3 wios=4\n8:0:1 rbytes=5\n\n 9:0 rbytes=6\n7:1\n"), uint8(3),
		[]byte("some\tavg10=1e2 new=x total=5  \nother line\nfull avg300=-0.5\n"))
	f.Fuzz(func(t *testing.T, a uint8, ac []byte, b uint8, bc []byte) {
		defer ff.restore(t)
		what := ff.set(t, a, ac) + ", " + ff.set(t, b, bc)
		got, gotErr := ourV2(t, root, "/ctr")
		if kernelLike(ac, bc) {
			want, wantErr := statV2Library(root, "/ctr")
			agree(t, what, want, got, wantErr, gotErr)
		}
	})
}

func statV2Library(root, group string) (_ *v2.Metrics, err error) {
	defer noPanic(&err)
	m, err := cgroup2.Load(group, cgroup2.WithMountpoint(root))
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return m.Stat()
}

// quietLog silences what cgroups/v3 logs about what it cannot parse, for a
// fuzz run.
func quietLog(f *testing.F) {
	old := log.GetLevel()
	_ = log.SetLevel("fatal")
	f.Cleanup(func() { log.L.Logger.SetLevel(old) })
}
