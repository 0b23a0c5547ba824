package nodelog

import (
	"bufio"
	"bytes"
	"io"
	"os"
)

// maxLine is longer than any line a writer writes; a longer one is skipped.
const maxLine = 64 << 10

// scanLines calls fn with each complete line of f in [off, limit) and
// returns the offset after the last complete line (an incomplete line at
// limit is left for later) and how many lines did not parse.
func scanLines(f *os.File, off, limit int64, fn func(*line) error) (int64, int, error) {
	if limit <= off {
		return off, 0, nil
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, off, limit-off), 64<<10)
	bad := 0
	for {
		b, err := readLine(br)
		if err == io.EOF {
			return off, bad, nil
		}
		if err != nil {
			return off, bad, err
		}
		off += int64(len(b.raw))
		if !b.ok {
			bad++
			continue
		}
		l, perr := parseLine(bytes.TrimSuffix(b.raw, []byte{'\n'}))
		if perr != nil {
			bad++
			continue
		}
		if err := fn(l); err != nil {
			return off, bad, err
		}
	}
}

type rawLine struct {
	raw []byte // the line with its newline (only its length, when !ok)
	ok  bool   // not too long to parse
}

// readLine returns the next complete line; io.EOF when none is left (an
// incomplete one at the end is not returned).
func readLine(br *bufio.Reader) (rawLine, error) {
	b, err := br.ReadSlice('\n')
	if err == nil {
		return rawLine{raw: b, ok: true}, nil
	}
	if err != bufio.ErrBufferFull {
		return rawLine{}, io.EOF
	}
	n := len(b)
	for err == bufio.ErrBufferFull {
		b, err = br.ReadSlice('\n')
		n += len(b)
	}
	if err != nil {
		return rawLine{}, io.EOF
	}
	return rawLine{raw: make([]byte, n), ok: n <= maxLine}, nil
}
