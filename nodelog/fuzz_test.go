package nodelog

import (
	"testing"
)

// FuzzParseCursor: any text either parses to a cursor whose text is the
// input, or is ErrInvalidCursor; never a panic.
func FuzzParseCursor(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef.42")
	f.Add("garbage")
	f.Add("0123456789abcdef0123456789abcdef.")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		if c.String() != s {
			t.Fatalf("ParseCursor(%q) = %q", s, c)
		}
	})
}

// FuzzParseLine: any line either parses to a header or to a record with a
// revision and an event, or is refused; never a panic. A record that
// parses encodes and parses back to the same revision and event.
func FuzzParseLine(f *testing.F) {
	f.Add([]byte(`{"rev":3,"time":"2026-01-01T00:00:00Z","event":"exited","kind":"container","namespace":"k8s.io","container_id":"c1","exit_status":3}`))
	f.Add([]byte(`{"header":{"log":"0123456789abcdef0123456789abcdef","first":1,"created":"2026-01-01T00:00:00Z"}}`))
	f.Add([]byte(`{"rev":1,"ev`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseLine(b)
		if err != nil || l.Header != nil {
			return
		}
		body, err := encodeBody(&l.Record)
		if err != nil {
			return
		}
		line := withRev(nil, l.Rev, body)
		again, err := parseLine(line[:len(line)-1])
		if err != nil || again.Rev != l.Rev || again.Event != l.Event {
			t.Fatalf("%s: encoded as %s: %+v, %v", b, line, again, err)
		}
	})
}
