//go:build e2e

package harness

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"
)

// LogLine is one whole line of a CRI container log: its partial ("P")
// pieces joined with the final ("F") one.
type LogLine struct {
	Time   time.Time // time of the line's last piece
	Stream string    // "stdout" or "stderr"
	Text   string    // without the newline
}

// ReadCRILog reads the CRI log file at path. Each line of the file is
// "<RFC3339Nano time> <stream> <P|F> <text>"; a stream's P pieces are
// joined with its next F line. A trailing unfinished piece is returned as
// a line of its own, so nothing written is hidden.
func ReadCRILog(path string) ([]LogLine, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []LogLine
	partial := map[string]*strings.Builder{}
	for i, raw := range bytes.Split(data, []byte("\n")) {
		if len(raw) == 0 {
			continue
		}
		fields := strings.SplitN(string(raw), " ", 4)
		if len(fields) < 3 {
			return out, fmt.Errorf("%s:%d: malformed CRI log line %q", path, i+1, raw)
		}
		ts, err := time.Parse(time.RFC3339Nano, fields[0])
		if err != nil {
			return out, fmt.Errorf("%s:%d: time: %w", path, i+1, err)
		}
		text := ""
		if len(fields) == 4 {
			text = fields[3]
		}
		b := partial[fields[1]]
		if b == nil {
			b = &strings.Builder{}
			partial[fields[1]] = b
		}
		b.WriteString(text)
		if fields[2] == "P" {
			continue
		}
		out = append(out, LogLine{Time: ts, Stream: fields[1], Text: b.String()})
		b.Reset()
	}
	for stream, b := range partial {
		if b.Len() > 0 {
			out = append(out, LogLine{Stream: stream, Text: b.String()})
		}
	}
	return out, nil
}
