package exitmon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startWithPidfd starts a shell script under a token and returns its pid
// and a pidfd (the caller closes it), skipping when the kernel gives none.
// Extra files become fd 3 and up in the child.
func startWithPidfd(t *testing.T, m *Monitor, script string, extra []*os.File, args ...string) (Token, *exec.Cmd, int) {
	t.Helper()
	tok := m.Begin()
	fd := -1
	cmd := exec.Command("/bin/sh", append([]string{"-c", script}, args...)...)
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{PidFD: &fd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if fd < 0 {
		t.Skip("kernel gave no pidfd")
	}
	return tok, cmd, fd
}

// pollOnly reaps through the pidfd poller of m, and no wait4(-1) at all,
// every few milliseconds for the test's lifetime.
func pollOnly(t *testing.T, m *Monitor) {
	t.Helper()
	if m.poll == nil {
		t.Skip("no pidfd poller on this kernel")
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				m.reapReady()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// TestPidfdReap: watched processes are reaped through their pidfds alone
// (no wait4(-1) runs), each exit delivered once with its own status, for
// normal exits and for deaths by signal.
func TestPidfdReap(t *testing.T) {
	m := New(newRecorder())
	pollOnly(t, m)
	type want struct {
		pid, code int
	}
	got := make(chan Status, 64)
	var wants []want
	// Exit codes 0..39, then deaths by SIGTERM and SIGKILL (128+signal),
	// all released together by closing the write end of one pipe.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 42; i++ {
		script, code := "read x <&3; exit $0", i
		switch i {
		case 40:
			script, code = "read x <&3; kill -TERM $$", 128+int(unix.SIGTERM)
		case 41:
			script, code = "read x <&3; kill -KILL $$", 128+int(unix.SIGKILL)
		}
		tok, cmd, fd := startWithPidfd(t, m, script, []*os.File{r}, strconv.Itoa(i))
		m.Track(tok, cmd.Process.Pid, fd, func(st Status) { got <- st })
		unix.Close(fd) // Track keeps its own
		wants = append(wants, want{cmd.Process.Pid, code})
	}
	r.Close()
	w.Close()
	seen := map[int]int{}
	deadline := time.After(10 * time.Second)
	for len(seen) < len(wants) {
		select {
		case st := <-got:
			if _, dup := seen[st.Pid]; dup {
				t.Fatalf("pid %d delivered twice", st.Pid)
			}
			seen[st.Pid] = st.Code
		case <-deadline:
			t.Fatalf("only %d of %d exits delivered through pidfds", len(seen), len(wants))
		}
	}
	for _, wt := range wants {
		if seen[wt.pid] != wt.code {
			t.Errorf("pid %d: code %d, want %d", wt.pid, seen[wt.pid], wt.code)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if len(got) != 0 {
		t.Fatal("an exit was delivered twice")
	}
	if m.watchLen() != 0 || m.unpolledLen() != 0 {
		t.Fatalf("left behind: watches %d unpolled %d", m.watchLen(), m.unpolledLen())
	}
	if c := m.Counters(); c.ExitsSeen != uint64(len(wants)) {
		t.Fatalf("exits seen %d, want %d", c.ExitsSeen, len(wants))
	}
}

// TestPidfdExitBeforeTrack: a process that exited before Track, and that no
// wait4(-1) reaped, is reaped through its pidfd as soon as it is tracked.
func TestPidfdExitBeforeTrack(t *testing.T) {
	m := New(newRecorder())
	pollOnly(t, m)
	tok, cmd, fd := startWithPidfd(t, m, "exit 9", nil)
	defer unix.Close(fd)
	// Wait until it is a zombie, without reaping it.
	var si unix.Siginfo
	if err := unix.Waitid(unix.P_PIDFD, fd, &si, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	got := make(chan Status, 2)
	m.Track(tok, cmd.Process.Pid, fd, func(st Status) { got <- st })
	select {
	case st := <-got:
		if st.Code != 9 || st.Pid != cmd.Process.Pid {
			t.Fatalf("got %+v, want pid %d code 9", st, cmd.Process.Pid)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exit before Track not delivered through the pidfd")
	}
}

// TestSweepReapsPolledProcess: wait4(-1) may reap a process whose pidfd is
// polled; the exit is delivered once and the pidfd's event ignored.
func TestSweepReapsPolledProcess(t *testing.T) {
	m := New(newRecorder())
	tok, cmd, fd := startWithPidfd(t, m, "exit 3", nil)
	defer unix.Close(fd)
	got := make(chan Status, 2)
	m.Track(tok, cmd.Process.Pid, fd, func(st Status) { got <- st })
	var si unix.Siginfo
	if err := unix.Waitid(unix.P_PIDFD, fd, &si, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	// A sweep that reaps with wait4(-1) only (the poller is not drained).
	m.sweepWait4()
	pollOnly(t, m)
	select {
	case st := <-got:
		if st.Code != 3 {
			t.Fatalf("code %d, want 3", st.Code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exit not delivered")
	}
	time.Sleep(20 * time.Millisecond)
	if len(got) != 0 {
		t.Fatal("exit delivered twice")
	}
	if c := m.Counters(); c.ExitsSeen != 1 {
		t.Fatalf("exits seen %d, want 1", c.ExitsSeen)
	}
}

// TestOrphanReapedWhilePolling: with every watched process polled, an
// orphan (reparented to the shim, a subreaper) is still reaped by Run.
func TestOrphanReapedWhilePolling(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skip("cannot become a subreaper:", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	m := New(newRecorder())
	if m.poll == nil {
		t.Skip("no pidfd poller on this kernel")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// A watched process that keeps running, so that sweeps are rate limited.
	tok, sleeper, fd := startWithPidfd(t, m, "sleep 30", nil)
	m.Track(tok, sleeper.Process.Pid, fd, func(Status) {})
	unix.Close(fd)
	defer sleeper.Process.Kill()
	// The orphan: a grandchild whose parent exits at once.
	out, err := exec.Command("/bin/sh", "-c", "sleep 0.2 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	orphan, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := unix.Getpgid(orphan); err != nil {
			break // reaped: the pid is gone
		}
		if time.Now().After(deadline) {
			state, _ := exec.Command("ps", "-o", "stat=", "-p", fmt.Sprint(orphan)).Output()
			t.Fatalf("orphan %d not reaped (state %s)", orphan, strings.TrimSpace(string(state)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c := m.Counters(); c.Orphans == 0 {
		t.Fatalf("orphan not counted: %+v", c)
	}
}
