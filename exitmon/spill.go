package exitmon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Codec turns events into bytes and back. When the Publisher also
// implements Codec, a queue that holds more than memCap events spills the
// rest to a file in the task's bundle instead of growing in memory.
type Codec interface {
	Encode(event any) ([]byte, error)
	Decode(b []byte) (any, error)
}

// spillName is the file, inside a task's bundle, that holds the events of
// its queue beyond memCap.
const spillName = "watch-outbox.spill"

// memCap is how many events a queue keeps in memory. A variable only so
// that tests can lower it.
var memCap = 256

// spill is the on-disk tail of a queue: events after the in-memory ones,
// in order. It is used only while the queue is over memCap.
type spill struct {
	path  string
	codec Codec
	w     *os.File
	r     *os.File
	sc    *bufio.Scanner
	n     int // events written and not read back yet
}

type spillRecord struct {
	Topic  string    `json:"t"`
	Queued time.Time `json:"q"`
	Event  []byte    `json:"e"`
	Free   bool      `json:"f,omitempty"`
	Exited time.Time `json:"x,omitzero"`
}

// put appends an event to the file.
func (s *spill) put(it item) error {
	b, err := s.codec.Encode(it.event)
	if err != nil {
		return err
	}
	line, err := json.Marshal(spillRecord{Topic: it.topic, Queued: it.queued, Event: b, Free: it.free, Exited: it.exited})
	if err != nil {
		return err
	}
	if s.w == nil {
		if s.w, err = os.OpenFile(s.path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return err
		}
		if s.r, err = os.Open(s.path); err != nil {
			return err
		}
		s.sc = bufio.NewScanner(s.r)
		s.sc.Buffer(make([]byte, 64<<10), 16<<20)
	}
	if _, err := s.w.Write(append(line, '\n')); err != nil {
		return err
	}
	s.n++
	return nil
}

// take reads the oldest spilled event back.
func (s *spill) take() (item, error) {
	if !s.sc.Scan() {
		return item{}, fmt.Errorf("spill %s: %d events missing: %v", s.path, s.n, s.sc.Err())
	}
	s.n--
	var rec spillRecord
	if err := json.Unmarshal(s.sc.Bytes(), &rec); err != nil {
		return item{}, err
	}
	ev, err := s.codec.Decode(rec.Event)
	if err != nil {
		return item{}, err
	}
	return item{topic: rec.Topic, event: ev, queued: rec.Queued, free: rec.Free, exited: rec.Exited}, nil
}

// reset removes the file once everything was read back.
func (s *spill) reset() {
	if s.w == nil || s.n > 0 {
		return
	}
	s.w.Close()
	s.r.Close()
	os.Remove(s.path)
	s.w, s.r, s.sc = nil, nil, nil
}
