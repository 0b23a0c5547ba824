package exitmon

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// unclaimedLen and openLen expose the monitor's bookkeeping to the tests.
func (m *Monitor) unclaimedLen() int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.unclaimed) }
func (m *Monitor) openLen() int      { m.mu.Lock(); defer m.mu.Unlock(); return len(m.open) }
func (m *Monitor) watchLen() int     { m.mu.Lock(); defer m.mu.Unlock(); return len(m.watches) }

func (m *Monitor) hasUnclaimed(pid int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.unclaimed[pid]) > 0
}

// TestEarlyExitMatched: a child that exits and is reaped before its pid
// is handed to Track still gets its own status, and nothing is left behind.
func TestEarlyExitMatched(t *testing.T) {
	for _, withPidfd := range []bool{false, true} {
		name := "no-pidfd"
		if withPidfd {
			name = "pidfd"
		}
		t.Run(name, func(t *testing.T) {
			m := New(newRecorder())
			tok := m.Begin()
			cmd := exec.Command("/bin/sh", "-c", "exit 7")
			fd := -1
			if withPidfd {
				cmd.SysProcAttr = &syscall.SysProcAttr{PidFD: &fd}
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if withPidfd {
				if fd < 0 {
					t.Skip("kernel gave no pidfd")
				}
				defer unix.Close(fd)
			}
			pid := cmd.Process.Pid
			reapUntil(t, m, "early exit", func() bool { return m.hasUnclaimed(pid) })

			got := make(chan Status, 2)
			m.track(tok, pid, fd, func(st Status) { got <- st })
			select {
			case st := <-got:
				if st.Code != 7 || st.Pid != pid {
					t.Fatalf("got %+v, want pid %d code 7", st, pid)
				}
				if st.ExitedAt.IsZero() {
					t.Fatal("exit without time")
				}
			default:
				t.Fatal("early exit not delivered by Track")
			}
			if n := m.unclaimedLen(); n != 0 {
				t.Errorf("unclaimed table holds %d pids after Track", n)
			}
			if n := m.openLen(); n != 0 {
				t.Errorf("%d tokens still open after Track", n)
			}
			if n := m.watchLen(); n != 0 {
				t.Errorf("%d watches left after a claimed exit", n)
			}
			if c := m.Counters(); c.ExitsSeen != 1 || c.Orphans != 0 {
				t.Errorf("counters %+v, want 1 exit seen and no orphan", c)
			}
		})
	}
}

// TestLateExitWatched: Track before the exit leaves a watch that Reap fires
// exactly once, with a signal mapped to 128+signal.
func TestLateExitWatched(t *testing.T) {
	m := New(newRecorder())
	tok := m.Begin()
	cmd := exec.Command("/bin/sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got := make(chan Status, 2)
	m.track(tok, cmd.Process.Pid, -1, func(st Status) { got <- st })
	m.reap()
	select {
	case st := <-got:
		t.Fatalf("exit %+v delivered while the child runs", st)
	default:
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var st Status
	reapUntil(t, m, "killed child", func() bool {
		select {
		case st = <-got:
			return true
		default:
			return false
		}
	})
	if st.Code != 128+int(unix.SIGKILL) {
		t.Fatalf("code %d, want %d", st.Code, 128+int(unix.SIGKILL))
	}
	time.Sleep(20 * time.Millisecond)
	if len(got) != 0 {
		t.Fatal("exit delivered twice")
	}
	if m.watchLen() != 0 || m.openLen() != 0 || m.unclaimedLen() != 0 {
		t.Fatalf("left behind: watches %d open %d unclaimed %d", m.watchLen(), m.openLen(), m.unclaimedLen())
	}
}

// TestUntrackedExitIsOrphan: with no open token an exit is counted as an
// orphan and not kept.
func TestUntrackedExitIsOrphan(t *testing.T) {
	m := New(newRecorder())
	m.inject(fakePid(1), 3)
	if m.unclaimedLen() != 0 {
		t.Fatal("exit kept with no open token")
	}
	if c := m.Counters(); c.Orphans != 1 || c.ExitsSeen != 1 {
		t.Fatalf("counters %+v, want 1 orphan of 1 exit", c)
	}
}

// TestOldExitNotMatched: an exit reaped before the token was taken belongs
// to an earlier process of a recycled pid and must not be matched.
func TestOldExitNotMatched(t *testing.T) {
	m := New(newRecorder())
	pid := fakePid(2)
	t0 := m.Begin() // keeps the exit below in the unclaimed table
	m.inject(pid, 3)
	if !m.hasUnclaimed(pid) {
		t.Fatal("exit with an open token not kept")
	}
	t1 := m.Begin()
	called := false
	m.track(t1, pid, -1, func(Status) { called = true })
	if called {
		t.Fatal("exit reaped before the token was matched")
	}
	if m.watchLen() != 1 {
		t.Fatal("no watch registered for the unmatched pid")
	}
	m.Cancel(t0)
	if m.unclaimedLen() != 0 || m.openLen() != 0 {
		t.Fatalf("after the last token: unclaimed %d open %d", m.unclaimedLen(), m.openLen())
	}
	if c := m.Counters(); c.Orphans != 1 {
		t.Fatalf("pruned exit not counted as orphan: %+v", c)
	}
	// The watch still gets the real, later exit.
	got := make(chan Status, 1)
	m.mu.Lock()
	m.watches[pid] = func(st Status) { got <- st }
	m.mu.Unlock()
	m.inject(pid, 4)
	if st := <-got; st.Code != 4 {
		t.Fatalf("later exit code %d, want 4", st.Code)
	}
}

// TestNewerExitWins: of several exits of a pid after the token, the latest
// is the tracked process's.
func TestNewerExitWins(t *testing.T) {
	m := New(newRecorder())
	pid := fakePid(3)
	tok := m.Begin()
	m.inject(pid, 1)
	m.inject(pid, 2)
	var got []int
	m.track(tok, pid, -1, func(st Status) { got = append(got, st.Code) })
	if len(got) != 1 || got[0] != 2 {
		t.Fatalf("got codes %v, want [2]", got)
	}
	if m.unclaimedLen() != 0 {
		t.Fatal("older exit not pruned")
	}
}

// TestLivePidfdBlocksStaleExit: while the process behind the pidfd runs,
// an unclaimed exit of the same pid (a recycled pid's predecessor) is not
// matched; the real exit is delivered later.
func TestLivePidfdBlocksStaleExit(t *testing.T) {
	m := New(newRecorder())
	tok := m.Begin()
	fd := -1
	cmd := exec.Command("/bin/sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{PidFD: &fd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if fd < 0 {
		cmd.Process.Kill()
		reapUntil(t, m, "child", func() bool { return m.Counters().ExitsSeen > 0 })
		t.Skip("kernel gave no pidfd")
	}
	defer unix.Close(fd)
	pid := cmd.Process.Pid
	if !alive(fd) {
		t.Fatal("alive reports a running process dead")
	}
	m.inject(pid, 3) // stale exit, after the token
	got := make(chan Status, 2)
	m.track(tok, pid, fd, func(st Status) { got <- st })
	select {
	case st := <-got:
		t.Fatalf("stale exit %+v matched to a live pidfd", st)
	default:
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var st Status
	reapUntil(t, m, "real exit", func() bool {
		select {
		case st = <-got:
			return true
		default:
			return false
		}
	})
	if st.Code != 137 {
		t.Fatalf("code %d, want the real 137", st.Code)
	}
	if alive(fd) {
		t.Fatal("alive reports a reaped process alive")
	}
	if alive(-1) {
		t.Fatal("alive(-1) is true")
	}
}

// TestCancelPrunes: cancelling the only token drops what only it could claim.
func TestCancelPrunes(t *testing.T) {
	m := New(newRecorder())
	tok := m.Begin()
	m.inject(fakePid(4), 1)
	m.inject(fakePid(5), 1)
	if m.unclaimedLen() != 2 {
		t.Fatalf("unclaimed %d, want 2", m.unclaimedLen())
	}
	m.Cancel(tok)
	if m.unclaimedLen() != 0 || m.openLen() != 0 {
		t.Fatalf("after Cancel: unclaimed %d open %d", m.unclaimedLen(), m.openLen())
	}
}

// TestStartCmd: StartCmd reports the exit code and the output is copied.
func TestStartCmd(t *testing.T) {
	m := New(newRecorder())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	for _, code := range []int{0, 5} {
		cmd := exec.Command("/bin/sh", "-c", "echo hi; exit $0", strconv.Itoa(code))
		var out strings.Builder
		cmd.Stdout = &out
		ch, err := m.StartCmd(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if got := waitCmd(cmd, ch); got != code {
			t.Fatalf("waitCmd = %d, want %d", got, code)
		}
		if out.String() != "hi\n" {
			t.Fatalf("output %q", out.String())
		}
	}
	if _, err := m.StartCmd(exec.Command("/nonexistent/binary")); err == nil {
		t.Fatal("StartCmd of a missing binary succeeded")
	}
	if m.openLen() != 0 {
		t.Fatal("failed StartCmd left its token open")
	}
}

// TestRunWokenByPidfd: Run delivers the exit of a tracked child at once,
// woken by its pidfd, not by the sweep (an hour here) nor by SIGCHLD.
func TestRunWokenByPidfd(t *testing.T) {
	m := running(t, time.Hour, true)

	for _, withFd := range []bool{false, true} {
		tok := m.Begin()
		fd := -1
		cmd := exec.Command("/bin/sleep", "30")
		if withFd {
			cmd.SysProcAttr = &syscall.SysProcAttr{PidFD: &fd}
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got := make(chan Status, 1)
		m.track(tok, cmd.Process.Pid, fd, func(st Status) { got <- st })
		if fd >= 0 {
			unix.Close(fd) // the monitor keeps its own
		}
		time.Sleep(50 * time.Millisecond) // Run is waiting again
		start := time.Now()
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		select {
		case st := <-got:
			if st.Code != 128+int(unix.SIGKILL) {
				t.Fatalf("code %d", st.Code)
			}
			t.Logf("pidfd from caller %v: delivered %v after the kill", withFd, time.Since(start))
		case <-time.After(10 * time.Second):
			t.Fatalf("pidfd from caller %v: exit not delivered without a sweep", withFd)
		}
	}
	m.mu.Lock()
	left := len(m.wake.fds)
	m.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d pidfds left open after their exits", left)
	}
}

// TestRunSweepsOrphans: a child nobody tracks (an orphan a host-PID
// container left to the subreaper) is reaped by the sweep.
func TestRunSweepsOrphans(t *testing.T) {
	m := running(t, 20*time.Millisecond, false)
	time.Sleep(50 * time.Millisecond)
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for m.Counters().Orphans == 0 {
		if time.Now().After(deadline) {
			t.Fatal("orphan not reaped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := unix.Kill(cmd.Process.Pid, 0); err != unix.ESRCH {
		t.Fatalf("orphan %d still there (kill 0: %v)", cmd.Process.Pid, err)
	}
}

// TestBurstPolling: when Run polls instead of waiting for a wake-up.
func TestBurstPolling(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	steps := []struct {
		n    int
		ms   int
		poll bool
		why  string
	}{
		{1, 0, false, "a lone exit (a runc call) is no burst"},
		{0, 0, false, "at rest"},
		{1, 100, false, "an exit long after the last one"},
		{1, 120, true, "an exit soon after the last one starts a burst"},
		{0, 121, true, "one poll found nothing"},
		{0, 122, false, "burstMisses polls in a row found nothing: the burst is over"},
		{0, 1122, false, "at rest"},
		{3, 5000, true, "several exits in one pass start a burst"},
		{0, 5001, true, "a miss"},
		{2, 5002, true, "exits keep coming"},
		{0, 5003, true, "the misses count again from zero"},
		{0, 5004, false, "over"},
		{1, 5100, false, "the next lone exit is no burst"},
	}
	b := burst{misses: -1}
	for i, s := range steps {
		if got := b.next(s.n, at(s.ms)); got != s.poll {
			t.Fatalf("step %d (%s): poll %v, want %v", i, s.why, got, s.poll)
		}
	}
}

// TestRunWaitsAfterBurst: once a burst is over, Run waits for wake-ups
// again: an exit nobody tracks (no pidfd wakes Run) is not reaped before
// the sweep (here an hour).
func TestRunWaitsAfterBurst(t *testing.T) {
	m := running(t, time.Hour, true)
	// Two tracked exits close together make a burst.
	got := make(chan Status, 2)
	for i := 0; i < 2; i++ {
		tok := m.Begin()
		cmd := exec.Command("/bin/true")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		m.track(tok, cmd.Process.Pid, -1, func(st Status) { got <- st })
	}
	for i := 0; i < 2; i++ {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("tracked exit not delivered")
		}
	}
	time.Sleep(100 * burstPoll * burstMisses)
	before := m.Counters().Orphans
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if m.Counters().Orphans > before {
		t.Fatal("untracked exit reaped at rest without a wake-up or a sweep")
	}
	m.reap() // that zombie, not to leave it to the next test
}

// running returns a monitor whose Run reaps, with a sweep every sweep, until
// the test ends. needWake skips the test on a kernel without pidfd_open.
func running(t *testing.T, sweep time.Duration, needWake bool) *Monitor {
	m := New(newRecorder())
	if needWake && m.wake == nil {
		t.Skip("no pidfd_open on this kernel: Run reaps on SIGCHLD")
	}
	m.sweep = sweep
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return m
}

// waitCmd waits for the exit of a command started with StartCmd and for its
// output to be copied, and returns its exit code.
func waitCmd(cmd *exec.Cmd, ch <-chan Status) int {
	st := <-ch
	_ = cmd.Wait() // already reaped: this only flushes the output copies
	return st.Code
}
