//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// The containerd restart matrix: {plain, TTY, exec with output, stdin
// attached} × {containerd down 5 s, 60 s}, for both runtimes. Every case
// runs in one pod per runtime, all at once, across one restart.
//
// What is checked, per case:
//   - plain, tty, stdin: the container writes mLines numbered lines of
//     about mLineLen bytes, paced, so that it fills its pipes and blocks
//     while containerd is away and writes on after it returned; its CRI log
//     must then hold every line 0..mLines-1 once and in order (a terminal's
//     \r dropped), CRI must report its true exit code, and it must finish
//     within mExitBound of containerd's return (not left blocked).
//   - stdin: its stdin stays open across the restart (a background cat
//     would report EOF on stderr): both shims hold a write side of the
//     stdin fifo themselves, so the container's stdin ends with CloseIO,
//     not with containerd's absence.
//   - exec: the container logs numbered lines like plain. An exec started
//     through CRI before the restart (its crictl stream dies with
//     containerd, and CRI never reads its output again) keeps running,
//     writes numbered lines to a file inside the container and a line to
//     its stdout every 100, and is released after the restart: its TaskExit
//     must carry its true status and its file every line. Execs started
//     after the restart (streaming, and ExecSync) must return their whole
//     output and exit codes.
//   - watch only: after every container exited and was removed, the shim's
//     fds and goroutines are back at the baseline taken before, and no
//     goroutine is left in the stdio copy.
//
// Where the stock shim fails, the result is logged as a known stock bug.

const (
	mLines     = 4000             // numbered lines per container
	mLineLen   = 200              // bytes per line, newline included
	mAtStop    = 100              // lines every log must hold before containerd stops
	mExitBound = 60 * time.Second // from containerd's return to each exit
	mPostLines = 2000             // lines of the streaming exec after the restart
	mSyncLines = 500              // lines of the ExecSync after the restart
)

// TestRestartMatrix runs the matrix for each downtime up to 60 s.
func TestRestartMatrix(t *testing.T) {
	for _, down := range downtimes() {
		if down > time.Minute {
			continue
		}
		t.Run(down.String(), func(t *testing.T) {
			forEach(t, func(t *testing.T, c *harness.Containerd, rt runtime) {
				restartMatrix(t, c, rt, down)
			})
		})
	}
}

// mCase is one container of the matrix.
type mCase struct {
	name   string
	config map[string]any // CRI config fields added to the base (tty, stdin)
	script string
	exit   int

	id, logPath string
	pid         int
	atStop      int // numbered lines in the CRI log when containerd stopped
	atRestart   int // ... when it was back
}

func matrixCases() []*mCase {
	return []*mCase{
		{name: "plain", script: numberedScript("exit 3"), exit: 3},
		{name: "tty", config: map[string]any{"tty": true}, script: numberedScript("exit 4"), exit: 4},
		{name: "stdin", config: map[string]any{"stdin": true, "stdin_once": false},
			script: stdinWatcher + numberedScript("exit 6"), exit: 6},
		{name: "exec", script: numberedScript("while [ ! -e /tmp/release ]; do sleep 0.1; done; exit 5"), exit: 5},
	}
}

// stdinWatcher reads the container's stdin in the background and, at EOF,
// prints "stdin-eof <uptime>" to stderr. (A background job's stdin is
// /dev/null unless redirected, hence fd 3.)
const stdinWatcher = `exec 3<&0; { cat <&3 >/dev/null; echo "stdin-eof $(cut -d' ' -f1 /proc/uptime)" >&2; } & `

// numberedScript writes lines "<i> <pad>" for i in 0..mLines-1, sleeping
// 0.1 s every 50 lines (at most ~100 KB/s), then runs tail.
func numberedScript(tail string) string {
	return fmt.Sprintf(`pad=%s; i=0; while [ $i -lt %d ]; do echo "$i $pad"; i=$((i+1)); `+
		`if [ $((i %% 50)) -eq 0 ]; then sleep 0.1; fi; done; %s`, mPad, mLines, tail)
}

// mPad fills the matrix's numbered lines up to about mLineLen bytes.
var mPad = strings.Repeat("x", mLineLen-len(strconv.Itoa(mLines))-2)

func restartMatrix(t *testing.T, c *harness.Containerd, rt runtime, down time.Duration) {
	pod := harness.Pod{Name: "matrix"}
	podID, err := c.RunPod(pod, rt.Handler)
	if err != nil {
		t.Fatal(err)
	}
	shims := c.ShimPids(rt.Handler)
	before, fdsBefore := shimResources(t, shims), fdTargets(shims)
	cases := matrixCases()
	for _, mc := range cases {
		startCase(t, c, podID, pod, mc)
	}
	var ex *mExec
	for _, mc := range cases {
		waitLines(t, mc, mAtStop)
		if mc.name == "exec" {
			ex = startPreExec(t, c, mc)
		}
	}
	r := restartWhileWriting(t, c, cases, down)
	for _, mc := range cases {
		if st, _, err := c.ContainerState(mc.id); err != nil || st != "CONTAINER_RUNNING" {
			t.Errorf("%s: precondition: container %s is %s (err %v) right after containerd returned, want it still writing", rt.Handler, mc.name, st, err)
		}
	}
	checkExecs(t, c, rt, ex)
	for _, mc := range cases {
		checkCase(t, c, rt, mc, r)
	}
	checkShimResources(t, c, rt, cases, shims, before, fdsBefore)
}

func startCase(t *testing.T, c *harness.Containerd, podID string, pod harness.Pod, mc *mCase) {
	t.Helper()
	cfg := c.ContainerConfig(harness.Container{Name: mc.name, Command: harness.Sh(mc.script)})
	for k, v := range mc.config {
		cfg[k] = v
	}
	id, err := c.CreateContainerFromConfig(podID, pod, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustCrictl(t, c, "start", id)
	mc.id = id
	info := criInfo(t, c, id)
	mc.logPath, mc.pid = info.Status.LogPath, info.Info.Pid
}

// criInspect is the part of `crictl inspect` the matrix reads.
type criInspect struct {
	Status struct {
		LogPath string `json:"logPath"`
	} `json:"status"`
	Info struct {
		Pid int `json:"pid"`
	} `json:"info"`
}

func criInfo(t *testing.T, c *harness.Containerd, id string) criInspect {
	t.Helper()
	var v criInspect
	out := mustCrictl(t, c, "inspect", "--output", "json", id)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	if v.Status.LogPath == "" || v.Info.Pid == 0 {
		t.Fatalf("inspect %s: no log path or pid: %s", id, out)
	}
	return v
}

// waitLines waits (30 s) until mc's CRI log holds n lines on stdout.
func waitLines(t *testing.T, mc *mCase, n int) {
	t.Helper()
	if !eventually(30*time.Second, func() bool { return countStdout(mc.logPath) >= n }) {
		t.Fatalf("container %s: %d lines in its CRI log after 30 s, want %d", mc.name, countStdout(mc.logPath), n)
	}
}

func countStdout(path string) int {
	lines, _ := harness.ReadCRILog(path)
	n := 0
	for _, l := range lines {
		if l.Stream == "stdout" {
			n++
		}
	}
	return n
}

// restart is when containerd was told to stop and when it was back, as
// wall time and as the machine's uptime (which containers can read).
type restart struct {
	back                   time.Time
	stopUptime, backUptime float64
}

// restartWhileWriting stops containerd, waits down and starts it again.
func restartWhileWriting(t *testing.T, c *harness.Containerd, cases []*mCase, down time.Duration) restart {
	t.Helper()
	r := restart{stopUptime: uptime(t)}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, mc := range cases {
		mc.atStop = countStdout(mc.logPath)
	}
	time.Sleep(down)
	if err := c.StartAgain(); err != nil {
		t.Fatal(err)
	}
	r.back, r.backUptime = time.Now(), uptime(t)
	for _, mc := range cases {
		mc.atRestart = countStdout(mc.logPath)
	}
	return r
}

// checkCase waits for mc's exit and checks its code and CRI log.
func checkCase(t *testing.T, c *harness.Containerd, rt runtime, mc *mCase, r restart) {
	t.Helper()
	st, after, ok := waitExitedBy(c, mc.id, r.back.Add(mExitBound))
	if !ok {
		report(t, rt, "container %s still %s %s after containerd returned (blocked); lines in its CRI log at stop %d, at restart %d, now %d",
			mc.name, st.State, time.Since(r.back).Round(time.Second), mc.atStop, mc.atRestart, countStdout(mc.logPath))
		return
	}
	lines, err := harness.ReadCRILog(mc.logPath)
	if err != nil {
		t.Fatal(err)
	}
	texts := stdoutTexts(lines)
	seq := checkNumbered(texts, mLines, " "+mPad)
	t.Logf("%s: %s: lines at stop %d, at restart %d, final %s; exit %d %s, %s after containerd returned",
		rt.Handler, mc.name, mc.atStop, mc.atRestart, seq.summary, st.ExitCode, st.Reason, after.Round(100*time.Millisecond))
	if !seq.ok {
		if lost, ok := containerdLoss(texts, mc.atStop); ok {
			t.Logf("%s: %s: containerd lost lines %d..%d, which it had read from the fifo but not yet written to the CRI log when it stopped; every other line is there",
				rt.Handler, mc.name, mc.atStop, mc.atStop+lost-1)
			seq.ok = true
		}
	}
	if !seq.ok {
		report(t, rt, "container %s: CRI log lost or garbled output: %s", mc.name, seq.summary)
	}
	if st.ExitCode != mc.exit {
		report(t, rt, "container %s: CRI reported exit %d, true exit %d", mc.name, st.ExitCode, mc.exit)
	}
	if mc.name == "stdin" {
		logStdin(t, rt, lines, r)
	}
}

// report fails t for watch and logs a known stock bug for the stock shim.
func report(t *testing.T, rt runtime, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if rt.Handler == "watch" {
		t.Errorf("watch: %s", msg)
		return
	}
	t.Logf("KNOWN STOCK BUG: %s: %s", rt.Handler, msg)
}

// waitExitedBy polls CRI until id is CONTAINER_EXITED or deadline passes;
// it returns the status and how long after deadline-mExitBound it exited.
func waitExitedBy(c *harness.Containerd, id string, deadline time.Time) (criStatus, time.Duration, bool) {
	for {
		st, err := inspect(c, id)
		if err == nil && st.State == "CONTAINER_EXITED" {
			return st, time.Since(deadline.Add(-mExitBound)), true
		}
		if time.Now().After(deadline) {
			return st, 0, false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stdoutTexts returns the stdout lines' texts without a terminal's \r.
func stdoutTexts(lines []harness.LogLine) []string {
	var out []string
	for _, l := range lines {
		if l.Stream == "stdout" {
			out = append(out, strings.TrimRight(l.Text, "\r"))
		}
	}
	return out
}

// numbered is what checkNumbered found.
type numbered struct {
	ok      bool
	summary string
}

// checkNumbered checks that texts are exactly "<i><suffix>" for i in
// 0..n-1, in order.
func checkNumbered(texts []string, n int, suffix string) numbered {
	var problems []string
	next := 0
	for k, text := range texts {
		num, _, _ := strings.Cut(text, " ")
		i, err := strconv.Atoi(num)
		switch {
		case err != nil || text != num+suffix:
			problems = append(problems, fmt.Sprintf("line %d is %q", k, abbreviate(text)))
		case i < next:
			problems = append(problems, fmt.Sprintf("%d again after %d", i, next-1))
		case i > next:
			problems = append(problems, fmt.Sprintf("gap %d..%d", next, i-1))
		}
		if err == nil && i >= next {
			next = i + 1
		}
	}
	if next < n {
		problems = append(problems, fmt.Sprintf("missing %d..%d", next, n-1))
	}
	summary := fmt.Sprintf("%d lines", len(texts))
	if len(problems) > 0 {
		if len(problems) > 5 {
			problems = append(problems[:5], fmt.Sprintf("and %d more", len(problems)-5))
		}
		summary += " (" + strings.Join(problems, "; ") + ")"
	} else {
		summary += fmt.Sprintf(" = 0..%d whole", n-1)
	}
	return numbered{ok: len(problems) == 0 && len(texts) == n, summary: summary}
}

// maxContainerdLoss is what containerd's CRI holds of a container's
// output between reading it from the fifo and writing it to the log: the
// io.Copy buffer (32 KiB) and the line reader's (4 KiB), in lines.
const maxContainerdLoss = (32<<10 + 4<<10) / mLineLen

// containerdLoss says whether the matrix log texts is whole but for lines
// containerd read and never wrote: a run of at most maxContainerdLoss
// lines missing right where the log ended when containerd had stopped
// (atStop lines), possibly followed by the tail of a line whose head it
// had read. The shim never reads its stdout fifos, so it cannot take
// those lines; that the fifo keeps what containerd did not read is
// TestOutputSurvivesReaderRestart's (proc), with a reader that counts.
func containerdLoss(texts []string, atStop int) (int, bool) {
	if atStop >= len(texts) {
		return 0, false
	}
	rest := texts[atStop:]
	expected := func(i int) string { return strconv.Itoa(i) + " " + mPad }
	next, _, _ := strings.Cut(rest[0], " ")
	resume, err := strconv.Atoi(next)
	if err != nil || rest[0] != expected(resume) {
		// The tail of line resume-1, then line resume.
		if len(rest) < 2 {
			return 0, false
		}
		next, _, _ = strings.Cut(rest[1], " ")
		if resume, err = strconv.Atoi(next); err != nil || !strings.HasSuffix(expected(resume-1), rest[0]) {
			return 0, false
		}
		rest = rest[1:]
	}
	lost := resume - atStop
	if lost <= 0 || lost > maxContainerdLoss {
		return 0, false
	}
	whole := slices.Concat(texts[:atStop], make([]string, lost), rest)
	for i := range lost {
		whole[atStop+i] = expected(atStop + i)
	}
	return lost, checkNumbered(whole, mLines, " "+mPad).ok
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// logStdin checks that the stdin container's stdin stayed open across
// the restart (EOF comes with CloseIO, not with containerd's absence); if
// it saw EOF, when, against the machine's uptime when containerd was told
// to stop and when it was back.
func logStdin(t *testing.T, rt runtime, lines []harness.LogLine, r restart) {
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l.Text, "stdin-eof "); ok && l.Stream == "stderr" {
			at, _ := strconv.ParseFloat(v, 64)
			report(t, rt, "container stdin: saw EOF on stdin %.2fs after containerd was told to stop (it was back after %.2fs); stdin must outlive containerd's absence",
				at-r.stopUptime, r.backUptime-r.stopUptime)
			return
		}
	}
	t.Logf("%s: stdin: the container's stdin stayed open across the restart, until it exited", rt.Handler)
}

func uptime(t *testing.T) float64 {
	t.Helper()
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	v, _, _ := strings.Cut(string(data), " ")
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// mExec is the exec started before the restart.
type mExec struct {
	mc     *mCase
	cmd    *exec.Cmd
	out    *syncBuffer
	done   chan error
	cancel context.CancelFunc
}

// startPreExec starts, through CRI, an exec that writes numbered lines to
// /tmp/pre.log until /tmp/release-pre exists, then exits 7. It prints a
// line to its stdout every 100 lines; the test waits for the first.
func startPreExec(t *testing.T, c *harness.Containerd, mc *mCase) *mExec {
	t.Helper()
	script := `i=0; while [ ! -e /tmp/release-pre ]; do echo $i >> /tmp/pre.log; ` +
		`if [ $((i % 100)) -eq 0 ]; then echo "pre $i"; fi; i=$((i+1)); ` +
		`if [ $((i % 50)) -eq 0 ]; then sleep 0.1; fi; done; echo end >> /tmp/pre.log; exit 7`
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &mExec{mc: mc, out: &syncBuffer{}, done: make(chan error, 1), cancel: cancel}
	e.cmd = c.CrictlCommand(ctx, "exec", mc.id, "sh", "-c", script)
	e.cmd.Stdout, e.cmd.Stderr = e.out, e.out
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.done <- e.cmd.Wait() }()
	if !eventually(30*time.Second, func() bool { return strings.Contains(e.out.String(), "pre 0") }) {
		t.Fatalf("exec before the restart printed %q in 30 s, want pre 0", e.out.String())
	}
	return e
}

// syncBuffer is a strings.Builder safe for a command's two writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// containerFile is path inside the container whose init is pid.
func containerFile(pid int, path string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", pid), path)
}

// checkExecs checks the exec from before the restart and two new ones,
// then lets the exec container end.
func checkExecs(t *testing.T, c *harness.Containerd, rt runtime, e *mExec) {
	t.Helper()
	select {
	case err := <-e.done:
		t.Logf("%s: exec: crictl exec started before the restart ended with containerd: %v", rt.Handler, err)
	case <-time.After(5 * time.Second):
		t.Logf("%s: exec: crictl exec started before the restart still attached 5 s after containerd returned; stopping it", rt.Handler)
		e.cancel()
	}
	checkPreExec(t, c, rt, e.mc)
	checkPostExec(t, c, rt, e.mc)
	if err := os.WriteFile(containerFile(e.mc.pid, "/tmp/release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkPreExec releases the exec from before the restart and checks its
// TaskExit status and its file.
func checkPreExec(t *testing.T, c *harness.Containerd, rt runtime, mc *mCase) {
	t.Helper()
	logFile := containerFile(mc.pid, "/tmp/pre.log")
	atRestart := len(fileLines(logFile))
	events := subscribe(t, c)
	time.Sleep(500 * time.Millisecond) // let it write on after containerd's return
	if err := os.WriteFile(containerFile(mc.pid, "/tmp/release-pre"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	status, ok := waitExecExit(events, mc.id, 30*time.Second)
	lines := fileLines(logFile)
	var seq numbered
	if n := len(lines); n > 0 && lines[n-1] == "end" {
		seq = checkNumbered(lines[:n-1], n-1, "")
	} else {
		seq = numbered{summary: fmt.Sprintf("%d lines, no end line", n)}
	}
	t.Logf("%s: exec before the restart: %d lines at restart, file %s; TaskExit seen %v status %d",
		rt.Handler, atRestart, seq.summary, ok, status)
	if !ok || status != 7 {
		report(t, rt, "exec started before the restart: TaskExit seen %v with status %d, true exit 7", ok, status)
	}
	if !seq.ok || atRestart >= len(lines)-1 {
		report(t, rt, "exec started before the restart: file %s, %d lines at restart (did not run on across the restart)", seq.summary, atRestart)
	}
}

// waitExecExit returns the status of the first TaskExit of an exec of
// container id within timeout.
func waitExecExit(events <-chan harness.Event, id string, timeout time.Duration) (uint32, bool) {
	deadline := time.After(timeout)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return 0, false
			}
			if e.Topic == "/tasks/exit" && e.ContainerID == id && e.ID != id {
				return e.ExitStatus, true
			}
		case <-deadline:
			return 0, false
		}
	}
}

func fileLines(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// checkPostExec runs a streaming exec and ExecSyncs after the restart:
// each must return every numbered line and its exit code. crictl drops an
// ExecSync's output when its exit code is not 0, so output and code are
// checked with two ExecSyncs.
func checkPostExec(t *testing.T, c *harness.Containerd, rt runtime, mc *mCase) {
	t.Helper()
	loop := func(n, code int) string {
		return fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo $i; i=$((i+1)); done; exit %d`, n, code)
	}
	out, err := c.Crictl("exec", mc.id, "sh", "-c", loop(mPostLines, 8))
	seq := checkNumbered(splitLines(out), mPostLines, "")
	codeOK := err != nil && strings.Contains(err.Error(), "exit code 8")
	t.Logf("%s: streaming exec after the restart: output %s; exit code 8 reported %v", rt.Handler, seq.summary, codeOK)
	if !seq.ok || !codeOK {
		report(t, rt, "streaming exec after the restart: output %s, error %v, want whole output and exit code 8", seq.summary, err)
	}
	out, err = c.Crictl("exec", "--sync", mc.id, "sh", "-c", loop(mSyncLines, 0))
	seq = checkNumbered(splitLines(out), mSyncLines, "")
	_, err9 := c.Crictl("exec", "--sync", mc.id, "sh", "-c", loop(mSyncLines, 9))
	codeOK = err9 != nil && strings.Contains(err9.Error(), "exited with 9")
	t.Logf("%s: ExecSync after the restart: output %s (err %v); exit 9 reported %v", rt.Handler, seq.summary, err, codeOK)
	if !seq.ok || err != nil || !codeOK {
		report(t, rt, "ExecSync after the restart: output %s (err %v), exit 9 reported %v (%v)", seq.summary, err, codeOK, err9)
	}
}

// splitLines splits command output into lines, ignoring trailing empty
// ones (crictl prints an ExecSync's stdout and stderr with a newline each).
func splitLines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// checkShimResources removes the containers and, for watch, checks that
// the shim gave back its fds and goroutines and holds no stdio copy.
func checkShimResources(t *testing.T, c *harness.Containerd, rt runtime, cases []*mCase, shims []int, before resources, fdsBefore map[string]int) {
	t.Helper()
	for _, mc := range cases {
		mustCrictl(t, c, "rm", "-f", mc.id) // -f: a blocked container is still running
	}
	after := settle(t, shims, before)
	t.Logf("%s: shim resources before %+v, after the containers were removed %+v", rt.Handler, before, after)
	if rt.Handler != "watch" {
		return
	}
	if after.FDs > before.FDs || after.Goroutines > before.Goroutines || after.Goroutines == 0 {
		t.Errorf("watch: shim holds %d fds and %d goroutines after the containers were removed, %d and %d before; new fds: %v",
			after.FDs, after.Goroutines, before.FDs, before.Goroutines, newFDs(fdsBefore, fdTargets(shims)))
	}
	for _, pid := range shims {
		if stuck := stdioGoroutines(t, pid); stuck != "" {
			t.Errorf("watch: shim %d has stdio goroutines left after the containers were removed:\n%s", pid, stuck)
		}
	}
}

// stdioGoroutines returns the stacks of a watch shim's goroutines that are
// in its stdio copy code.
func stdioGoroutines(t *testing.T, pid int) string {
	t.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(exe, "stacks", strconv.Itoa(pid)).Output()
	if err != nil {
		t.Fatalf("stacks of shim %d: %v", pid, err)
	}
	var stuck []string
	for _, g := range strings.Split(string(out), "\n\n") {
		if strings.Contains(g, "/proc.(*pio)") || strings.Contains(g, "/proc.copyStream") || strings.Contains(g, "/proc.lingerUntilRead") {
			stuck = append(stuck, g)
		}
	}
	return strings.Join(stuck, "\n\n")
}

// fdTargets counts the shims' open fds by what they point to.
func fdTargets(pids []int) map[string]int {
	out := map[string]int{}
	for _, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
				out[target]++
			}
		}
	}
	return out
}

// newFDs lists the fd targets of after that before did not hold as often.
func newFDs(before, after map[string]int) []string {
	var out []string
	for target, n := range after {
		if n > before[target] {
			out = append(out, fmt.Sprintf("%s x%d", target, n-before[target]))
		}
	}
	return out
}

// TestContainerdLossRule: what the matrix puts down to containerd's own
// buffers, and what it still fails on. No containerd needed.
func TestContainerdLossRule(t *testing.T) {
	line := func(i int) string { return strconv.Itoa(i) + " " + mPad }
	log := func(skip func(i int) bool, extra map[int]string) []string {
		var out []string
		for i := range mLines {
			if s, ok := extra[i]; ok {
				out = append(out, s)
			}
			if !skip(i) {
				out = append(out, line(i))
			}
		}
		return out
	}
	between := func(a, b int) func(int) bool { return func(i int) bool { return i >= a && i <= b } }
	for _, c := range []struct {
		name   string
		texts  []string
		atStop int
		lost   int
		ok     bool
	}{
		{"CI 2026-12-02: 446..449 lost at the stop", log(between(446, 449), nil), 446, 4, true},
		{"the head of a line read too", log(between(446, 449), map[int]string{450: line(449)[50:]}), 446, 4, true},
		{"as much as containerd can hold", log(between(100, 100+maxContainerdLoss-1), nil), 100, maxContainerdLoss, true},
		{"more than containerd can hold", log(between(100, 100+maxContainerdLoss), nil), 100, 0, false},
		{"a gap a few lines after the stop", log(between(450, 452), nil), 446, 0, false},
		{"a gap after the stop, where the log went on", log(between(440, 445), nil), 436, 0, false},
		{"a second gap later", log(func(i int) bool { return (i >= 446 && i <= 449) || i == 3000 }, nil), 446, 0, false},
		{"a line twice", log(between(446, 449), map[int]string{2000: line(1999)}), 446, 0, false},
		{"a fragment that is no line's tail", log(between(446, 449), map[int]string{450: "garbage"}), 446, 0, false},
		{"nothing lost", log(func(int) bool { return false }, nil), 446, 0, false},
	} {
		lost, ok := containerdLoss(c.texts, c.atStop)
		if ok != c.ok || (ok && lost != c.lost) {
			t.Errorf("%s: containerdLoss = %d, %v; want %d, %v", c.name, lost, ok, c.lost, c.ok)
		}
	}
}
