package cgroup

// The shim answers Stats by reading the container's cgroup files and
// writing the io.containerd.cgroups.v1/v2 Metrics message straight into
// protobuf wire format. containerd's CRI asks every container for its stats
// once a second for as long as the pod lives, so this path is the shim's
// steady-state work: it reuses one read buffer and one output buffer per
// container, and neither builds the Go message structs nor initialises
// protobuf reflection for them. The result decodes to exactly what
// github.com/containerd/cgroups/v3 returns for the same files (the tests
// compare the two, and the fuzz targets do on arbitrary file contents).

import (
	"bytes"
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
)

// Type URLs of the Any that carries the metrics, as typeurl names the
// cgroups/v3 stats messages.
const (
	metricsV1URL = "io.containerd.cgroups.v1.Metrics"
	metricsV2URL = "io.containerd.cgroups.v2.Metrics"
)

// pbuf appends protobuf fields to b. Zero scalars are left out, as proto3
// encodes them; messages are always written, even when empty, because a
// present empty message decodes differently from an absent one.
type pbuf struct {
	b []byte
}

func (p *pbuf) uint(field int, v uint64) {
	if v == 0 {
		return
	}
	p.b = protowire.AppendTag(p.b, protowire.Number(field), protowire.VarintType)
	p.b = protowire.AppendVarint(p.b, v)
}

// str writes a string field. A protobuf string is UTF-8 or the message
// does not decode, so bytes that are not (a device name in a cgroup file)
// are written as U+FFFD.
func (p *pbuf) str(field int, s []byte) {
	if len(s) == 0 {
		return
	}
	if !utf8.Valid(s) {
		s = bytes.ToValidUTF8(s, []byte("\uFFFD"))
	}
	p.b = protowire.AppendTag(p.b, protowire.Number(field), protowire.BytesType)
	p.b = protowire.AppendBytes(p.b, s)
}

// double writes a double field; like proto3, it leaves out only +0.
func (p *pbuf) double(field int, v float64) {
	if math.Float64bits(v) == 0 {
		return
	}
	p.b = protowire.AppendTag(p.b, protowire.Number(field), protowire.Fixed64Type)
	p.b = protowire.AppendFixed64(p.b, math.Float64bits(v))
}

// packed writes a packed repeated uint64 field.
func (p *pbuf) packed(field int, vs []uint64) {
	if len(vs) == 0 {
		return
	}
	n := 0
	for _, v := range vs {
		n += protowire.SizeVarint(v)
	}
	p.b = protowire.AppendTag(p.b, protowire.Number(field), protowire.BytesType)
	p.b = protowire.AppendVarint(p.b, uint64(n))
	for _, v := range vs {
		p.b = protowire.AppendVarint(p.b, v)
	}
}

// begin starts a message field; end(begin(...)) closes it.
func (p *pbuf) begin(field int) int {
	p.b = protowire.AppendTag(p.b, protowire.Number(field), protowire.BytesType)
	p.b = append(p.b, 0) // length, fixed up by end
	return len(p.b)
}

func (p *pbuf) end(start int) {
	n := len(p.b) - start
	size := protowire.SizeVarint(uint64(n))
	if size > 1 {
		p.b = append(p.b, make([]byte, size-1)...)
		copy(p.b[start+size-1:], p.b[start:start+n])
	}
	protowire.AppendVarint(p.b[start-1:start-1], uint64(n))
}

// statReader reads small cgroup files into a buffer it reuses. Paths are
// given in parts (a directory, a file name) and joined in a reused buffer
// too: Stats opens some twenty files per call.
type statReader struct {
	buf  []byte
	path []byte // the NUL-terminated path of the file being opened
}

// read returns the content of the file at the concatenation of path,
// valid until the next read.
func (r *statReader) read(path ...string) ([]byte, error) {
	r.path = r.path[:0]
	for _, s := range path {
		r.path = append(r.path, s...)
	}
	r.path = append(r.path, 0)
	fd, err := openat(r.path)
	if err != nil {
		return nil, newStatError(path, err)
	}
	defer unix.Close(fd)
	if r.buf == nil {
		r.buf = make([]byte, 4096)
	}
	n := 0
	for {
		if n == len(r.buf) {
			r.buf = append(r.buf, make([]byte, len(r.buf))...)
		}
		m, err := unix.Read(fd, r.buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, newStatError(path, err)
		}
		if m == 0 {
			return r.buf[:n], nil
		}
		n += m
	}
}

// openat opens the NUL-terminated path read-only, retrying on EINTR.
func openat(path []byte) (int, error) {
	for {
		fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, atFDCWD, uintptr(unsafe.Pointer(&path[0])),
			unix.O_RDONLY|unix.O_CLOEXEC, 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(fd), nil
	}
}

// atFDCWD is AT_FDCWD as the syscall takes it.
var atFDCWD = func() uintptr { fd := unix.AT_FDCWD; return uintptr(fd) }()

// readUint reads a file holding one number; "max" reads as 0, as
// cgroups/v3 reports it.
func (r *statReader) readUint(path ...string) (uint64, error) {
	b, err := r.read(path...)
	if err != nil {
		return 0, err
	}
	b = bytes.TrimSpace(b)
	if string(b) == "max" {
		return 0, nil
	}
	v, err := parseUint(b)
	if err != nil {
		return 0, newStatError(path, err)
	}
	return v, nil
}

type statError struct {
	path string
	err  error
}

// newStatError joins the parts of path only when there is an error.
func newStatError(path []string, err error) error {
	return &statError{path: strings.Join(path, ""), err: err}
}

func (e *statError) Error() string { return "cgroup stats: " + e.path + ": " + e.err.Error() }
func (e *statError) Unwrap() error { return e.err }

// notExist reports whether err means a cgroup file or controller is absent.
func notExist(err error) bool { return errors.Is(err, unix.ENOENT) }

var errFormat = errors.New("invalid format")

// parseUint parses a cgroup counter. Negative values (a limit of -1) read
// as 0, as cgroups/v3 reads them.
func parseUint(b []byte) (uint64, error) {
	if len(b) > 0 && b[0] == '-' {
		if len(b) > 1 && allDigits(b[1:]) {
			return 0, nil
		}
		return 0, errFormat
	}
	if len(b) == 0 || !allDigits(b) {
		return 0, errFormat
	}
	var v uint64
	for _, c := range b {
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, strconv.ErrRange
		}
		v = v*10 + d
	}
	return v, nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// nextLine splits off the first line of b.
func nextLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// fields splits line at spaces and tabs into at most len(dst) fields and
// returns how many there are in all.
func fields(line []byte, dst [][]byte) int { return fieldsSep(line, dst, 0) }

// fieldsSep is fields with sep (if not 0) as one more separator.
func fieldsSep(line []byte, dst [][]byte, sep byte) int {
	isSep := func(c byte) bool { return c == ' ' || c == '\t' || (sep != 0 && c == sep) }
	n := 0
	for {
		for len(line) > 0 && isSep(line[0]) {
			line = line[1:]
		}
		if len(line) == 0 {
			return n
		}
		i := 0
		for i < len(line) && !isSep(line[i]) {
			i++
		}
		if n < len(dst) {
			dst[n] = line[:i]
		}
		n++
		line = line[i:]
	}
}

// keyValues calls fn for each "key value" line of b, with the value parsed.
// A line of another shape is an error, as it is for cgroups/v3.
func keyValues(b []byte, fn func(key []byte, v uint64)) error {
	var f [2][]byte
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if fields(line, f[:]) != 2 {
			return errFormat
		}
		v, err := parseUint(f[1])
		if err != nil {
			return err
		}
		fn(f[0], v)
	}
	return nil
}

// readKeys reads the "key value" file at path into vals, vals[i] being the
// value of keys[i], and returns how many of the keys it found.
func (r *statReader) readKeys(keys []string, vals []uint64, path ...string) (int, error) {
	b, err := r.read(path...)
	if err != nil {
		return 0, err
	}
	found := 0
	err = keyValues(b, func(k []byte, v uint64) {
		for i, key := range keys {
			if string(k) == key {
				vals[i] = v
				found++
				return
			}
		}
	})
	if err != nil {
		return 0, newStatError(path, err)
	}
	return found, nil
}

// hugePagesDir lists the host's huge page sizes.
const hugePagesDir = "/sys/kernel/mm/hugepages"

// readHugePageSizes names the huge page sizes of dir (hugePagesDir) as the
// hugetlb controller does in its file names ("2MB", "1GB"): in name order if
// sorted, else in the order the directory lists them.
func readHugePageSizes(dir string, sorted bool) []string {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 4096)
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err != nil || n == 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	if sorted {
		sort.Strings(names)
	}
	var sizes []string
	for _, name := range names {
		kb, ok := bytes.CutPrefix([]byte(name), []byte("hugepages-"))
		if !ok {
			continue
		}
		kb, ok = bytes.CutSuffix(kb, []byte("kB"))
		size, err := strconv.Atoi(string(kb))
		if !ok || err != nil {
			continue
		}
		switch {
		case size >= 1<<20:
			sizes = append(sizes, strconv.Itoa(size>>20)+"GB")
		case size >= 1<<10:
			sizes = append(sizes, strconv.Itoa(size>>10)+"MB")
		default:
			sizes = append(sizes, strconv.Itoa(size)+"KB")
		}
	}
	return sizes
}
