package nodelog

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const segPrefix, segSuffix = "seg-", ".jsonl"

// segmentName is the file of the segment whose first record has revision
// first; zero-padded, so names sort as revisions do.
func segmentName(first uint64) string {
	return fmt.Sprintf("%s%020d%s", segPrefix, first, segSuffix)
}

func segmentPath(dir string, first uint64) string { return filepath.Join(dir, segmentName(first)) }

// segments returns the first revisions of the segments in dir, ascending.
func segments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list log segments: %w", err)
	}
	var firsts []uint64
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), segPrefix)
		if !ok {
			continue
		}
		if n, ok = strings.CutSuffix(n, segSuffix); !ok {
			continue
		}
		if v, err := strconv.ParseUint(n, 10, 64); err == nil {
			firsts = append(firsts, v)
		}
	}
	slices.Sort(firsts)
	return firsts, nil
}

// createSegment writes a new segment: its header, then snapshot (complete
// lines), to a temporary file renamed into place, so a reader never sees a
// segment without its header. It returns the segment's size.
func createSegment(dir, logID string, first uint64, snapshot []byte) (int64, error) {
	hb, err := json.Marshal(struct {
		Header header `json:"header"`
	}{header{Log: logID, First: first, Created: time.Now().UTC()}})
	if err != nil {
		return 0, err
	}
	buf := append(append(hb, '\n'), snapshot...)
	tmp := segmentPath(dir, first) + ".tmp"
	if err := os.WriteFile(tmp, buf, 0o600); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("create log segment: %w", err)
	}
	if err := os.Rename(tmp, segmentPath(dir, first)); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("create log segment: %w", err)
	}
	return int64(len(buf)), nil
}

// readHeader reads the header line of the segment first.
func readHeader(dir string, first uint64) (*header, error) {
	f, err := os.Open(segmentPath(dir, first))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 512)
	n, _ := f.ReadAt(b, 0)
	nl := slices.Index(b[:n], '\n')
	if nl < 0 {
		return nil, fmt.Errorf("segment %d: no header", first)
	}
	l, err := parseLine(b[:nl])
	if err != nil || l.Header == nil {
		return nil, fmt.Errorf("segment %d: bad header", first)
	}
	return l.Header, nil
}

// openSegment opens a segment for appending at explicit offsets.
func openSegment(dir string, first uint64) (*os.File, error) {
	f, err := os.OpenFile(segmentPath(dir, first), os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open log segment: %w", err)
	}
	return f, nil
}
