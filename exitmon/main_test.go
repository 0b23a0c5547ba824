package exitmon

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of the backoff variables, captured before TestMain shortens them.
var defaultBackoffBase, defaultBackoffCap = backoffBase, backoffCap

func TestMain(m *testing.M) {
	// Short backoffs keep the outbox retry tests fast. Set before any
	// outbox worker starts, so no test races on them.
	backoffBase, backoffCap = time.Millisecond, 8*time.Millisecond
	os.Exit(m.Run())
}

// fakePid is a pid above the kernel's maximum pid_max (2^22): no real
// process can ever have it, so synthetic exits never meet real ones.
func fakePid(n int) int { return 1<<22 + 1000 + n }

// inject dispatches a synthetic exit of pid with code, as Reap would,
// and delivers it synchronously.
func (m *Monitor) inject(pid, code int) {
	m.mu.Lock()
	d := m.dispatchLocked(pid, unix.WaitStatus(code<<8))
	m.mu.Unlock()
	if d != nil {
		d()
	}
}

// reapUntil calls Reap until cond holds or the test times out.
func reapUntil(t *testing.T, m *Monitor, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		m.reap()
		time.Sleep(2 * time.Millisecond)
	}
}

// event is one published event as the recorder saw it.
type event struct {
	topic string
	ev    any
}

// recorder is a Publisher that records what it delivers. fail, when set,
// decides per call whether the send fails.
type recorder struct {
	mu     sync.Mutex
	events []event
	calls  int
	fail   func(topic string, ev any, call int) bool
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) Publish(_ context.Context, topic string, ev any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail != nil && r.fail(topic, ev, r.calls) {
		return fmt.Errorf("injected failure %d", r.calls)
	}
	r.events = append(r.events, event{topic, ev})
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) setFail(f func(topic string, ev any, call int) bool) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

func (r *recorder) snapshot() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// waitFor waits until the recorder holds at least n events.
func (r *recorder) waitFor(t *testing.T, n int) []event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if ev := r.snapshot(); len(ev) >= n {
			return ev
		}
		select {
		case <-r.notify:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %d events, have %v", n, r.snapshot())
		}
	}
}

// settle gives the outbox time to deliver anything it wrongly would, and
// returns what was delivered.
func (r *recorder) settle() []event {
	time.Sleep(50 * time.Millisecond)
	return r.snapshot()
}
