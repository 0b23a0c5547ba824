package exitmon

import (
	"context"
	"sync"
	"time"
)

// Publisher delivers one event to containerd. An error means "not
// delivered": the outbox retries it.
type Publisher interface {
	Publish(ctx context.Context, topic string, event any) error
}

const outboxWorkers = 4

// Retry backoff of a failed send. Variables only so that tests can shorten
// them; nothing else changes them.
var (
	backoffBase = 50 * time.Millisecond
	backoffCap  = 5 * time.Second
)

// outbox keeps one ordered queue per task and a bounded pool of workers.
// A queue is served by at most one worker at a time, so a task's events
// leave in the order they were queued, except that a run of adjacent free
// events (exec exits, which containerd does not order among themselves)
// is sent concurrently. A failed send parks only that queue
// (with capped exponential backoff) and frees the worker for other tasks.
// Events are never evicted. Workers start when queues become ready and end
// when none is: a shim at rest, which is most of its life, keeps none.
type outbox struct {
	pub     Publisher
	codec   Codec // nil: queues stay in memory
	workers int   // at most this many serve queues at once

	mu      sync.Mutex
	ready   []*queue // queues waiting for a worker, in order
	running int      // workers started and not ended
	queues  map[*queue]struct{}
	queued  uint64
	sent    uint64
	retried uint64
	// exitLatency holds, for each TaskExit containerd acknowledged, the
	// time from the exit to the acknowledgement.
	exitLatency Histogram
}

type item struct {
	topic  string
	event  any
	queued time.Time
	// exited is when the process exited, for a TaskExit (else zero).
	exited time.Time
	// free marks an event whose order relative to the other free events
	// next to it in the queue does not matter (the exits of a task's execs).
	// Such a run of events is sent concurrently; every other event is a
	// barrier: it leaves alone, after all events before it were delivered
	// and before any event after it is sent.
	free bool
}

// maxInFlight caps the sends a queue keeps in flight for a run of free
// events.
const maxInFlight = 64

// queue is one task's ordered events.
type queue struct {
	ob      *outbox
	items   []item
	spill   *spill // events beyond memCap, when the publisher is a Codec
	busy    bool   // scheduled, being served, or parked for a retry
	attempt int
	closed  bool
	drained chan struct{}
}

func newOutbox(pub Publisher, workers int) *outbox {
	ob := &outbox{pub: pub, workers: workers, queues: map[*queue]struct{}{}}
	ob.codec, _ = pub.(Codec)
	return ob
}

// newQueue returns a task's queue; spillPath is where it spills beyond
// memCap ("" never spills).
func (ob *outbox) newQueue(spillPath string) *queue {
	q := &queue{ob: ob, drained: make(chan struct{})}
	if ob.codec != nil && spillPath != "" {
		q.spill = &spill{path: spillPath, codec: ob.codec}
	}
	ob.mu.Lock()
	ob.queues[q] = struct{}{}
	ob.mu.Unlock()
	return q
}

// push appends an event that is delivered after every event pushed before
// it. It never blocks on delivery.
func (q *queue) push(topic string, ev any) { q.add(item{topic: topic, event: ev}) }

// pushFree appends an event that may be delivered concurrently with the
// free events adjacent to it, still after every barrier pushed before it
// and before every barrier pushed after it.
func (q *queue) pushFree(topic string, ev any) { q.add(item{topic: topic, event: ev, free: true}) }

func (q *queue) add(it item) {
	ob := q.ob
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if q.closed {
		return
	}
	it.queued = time.Now()
	it.exited = exitTime(it.event)
	if !q.spillLocked(it) {
		q.items = append(q.items, it)
	}
	ob.queued++
	ob.scheduleLocked(q)
}

// close refuses further events; drained is closed once all queued ones
// have been sent.
func (q *queue) close() {
	ob := q.ob
	ob.mu.Lock()
	defer ob.mu.Unlock()
	q.closed = true
	ob.maybeDoneLocked(q)
}

func (ob *outbox) maybeDoneLocked(q *queue) {
	if q.closed && len(q.items) == 0 && !q.busy {
		if _, ok := ob.queues[q]; ok {
			delete(ob.queues, q)
			close(q.drained)
		}
	}
}

func (ob *outbox) scheduleLocked(q *queue) {
	if q.busy || len(q.items) == 0 {
		return
	}
	q.busy = true
	ob.readyLocked(q)
}

// readyLocked hands a busy queue to a worker, starting one if fewer than
// workers run.
func (ob *outbox) readyLocked(q *queue) {
	ob.ready = append(ob.ready, q)
	if ob.running < ob.workers {
		ob.running++
		go ob.work()
	}
}

// work serves ready queues until there is none left.
func (ob *outbox) work() {
	ob.mu.Lock()
	for len(ob.ready) > 0 {
		q := ob.ready[0]
		ob.ready[0] = nil
		ob.ready = ob.ready[1:]
		if len(ob.ready) == 0 {
			ob.ready = nil // let the backing array go
		}
		ob.mu.Unlock()
		ob.serve(q)
		ob.mu.Lock()
	}
	ob.running--
	ob.mu.Unlock()
}

// serve sends q's events until it is empty or a send fails. A barrier is
// sent alone; a run of free events at the head is sent concurrently, and
// the ones that failed stay at the head for the retry.
func (ob *outbox) serve(q *queue) {
	for {
		ob.mu.Lock()
		if len(q.items) == 0 {
			q.busy = false
			ob.maybeDoneLocked(q)
			ob.mu.Unlock()
			return
		}
		n := 1
		if q.items[0].free {
			for n < len(q.items) && n < maxInFlight && q.items[n].free {
				n++
			}
		}
		// Only serve removes items, so the first n stay put while unlocked.
		batch := q.items[:n:n]
		ob.mu.Unlock()

		failed, lat := ob.send(batch)

		ob.mu.Lock()
		ob.sent += uint64(n - len(failed))
		ob.exitLatency.merge(&lat)
		if len(failed) > 0 {
			q.items = append(failed, q.items[n:]...)
			q.attempt++
			ob.retried += uint64(len(failed))
			delay := backoff(q.attempt)
			ob.mu.Unlock()
			time.AfterFunc(delay, func() {
				ob.mu.Lock()
				ob.readyLocked(q)
				ob.mu.Unlock()
			})
			return
		}
		q.items = q.items[n:]
		q.refillLocked()
		q.attempt = 0
		ob.mu.Unlock()
	}
}

// send publishes batch, concurrently when it holds more than one event,
// and returns the events that were not delivered, in their order, and the
// exit latencies of the TaskExits that were.
func (ob *outbox) send(batch []item) (failed []item, lat Histogram) {
	publish := func(it item) sendResult {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := ob.pub.Publish(ctx, it.topic, it.event)
		return sendResult{err: err, at: time.Now()}
	}
	if len(batch) == 1 {
		r := publish(batch[0])
		if r.err != nil {
			return []item{batch[0]}, lat
		}
		lat.observeSince(batch[0].exited, r.at)
		return nil, lat
	}
	results := make([]sendResult, len(batch))
	var wg sync.WaitGroup
	for i := 1; i < len(batch); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = publish(batch[i])
		}()
	}
	results[0] = publish(batch[0])
	wg.Wait()
	for i, r := range results {
		if r.err != nil {
			failed = append(failed, batch[i])
			continue
		}
		lat.observeSince(batch[i].exited, r.at)
	}
	return failed, lat
}

// sendResult is how one publish ended, and when.
type sendResult struct {
	err error
	at  time.Time
}

func backoff(attempt int) time.Duration {
	d := backoffBase
	for i := 1; i < attempt && d < backoffCap; i++ {
		d *= 2
	}
	return min(d, backoffCap)
}

func (ob *outbox) fill(c *Counters) {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	c.EventsQueued, c.EventsSent, c.EventsRetried = ob.queued, ob.sent, ob.retried
	c.ExitPublished = ob.exitLatency
	now := time.Now()
	for q := range ob.queues {
		if len(q.items) > 0 {
			c.OldestUnsent = max(c.OldestUnsent, now.Sub(q.items[0].queued))
		}
	}
}

// pending counts events not yet delivered.
func (ob *outbox) pending() int {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	n := 0
	for q := range ob.queues {
		n += len(q.items)
		if q.spill != nil {
			n += q.spill.n
		}
	}
	return n
}

// spillLocked writes it to the spill file when memory is full (or earlier
// events are already there, to keep order). It reports whether it did.
func (q *queue) spillLocked(it item) bool {
	if q.spill == nil || (len(q.items) < memCap && q.spill.n == 0) {
		return false
	}
	if err := q.spill.put(it); err != nil {
		// Keeping the event in memory beats losing it.
		logger(context.Background()).WithError(err).Warn("spill event")
		return false
	}
	return true
}

// refillLocked moves spilled events back into memory as room frees up.
func (q *queue) refillLocked() {
	if q.spill == nil {
		return
	}
	for len(q.items) < memCap && q.spill.n > 0 {
		it, err := q.spill.take()
		if err != nil {
			logger(context.Background()).WithError(err).Error("read spilled event")
			q.spill.n = 0
			break
		}
		q.items = append(q.items, it)
	}
	q.spill.reset()
}
