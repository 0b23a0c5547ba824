//go:build critest && e2e

package critest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// Network of the pods: a bridge of its own on a private subnet, living only
// on this machine.
const (
	bridgeName = "watchcri0"
	podSubnet  = "10.199.77.0/24"
)

// handlers are the runtime handlers compared, stock first.
var handlers = []string{"runc", "watch"}

func logf(format string, args ...any) {
	fmt.Printf("critest: "+format+"\n", args...)
}

// specResult is one spec of a ginkgo JSON report.
type specResult struct {
	State   string
	Message string
}

func (r specResult) failed() bool {
	return r.State != "passed" && r.State != "skipped" && r.State != "pending"
}

// ginkgoReport is the part of ginkgo's JSON report read here.
type ginkgoReport struct {
	SpecReports []struct {
		ContainerHierarchyTexts []string
		LeafNodeText            string
		LeafNodeType            string
		State                   string
		Failure                 struct {
			Message  string
			Location struct {
				FileName   string
				LineNumber int
			}
		}
	}
}

// summaryRE matches the summary lines ginkgo prints at the end of a run.
var summaryRE = regexp.MustCompile(`Ran \d+ of \d+ Specs.*|(SUCCESS|FAIL)! -- .*`)

// runCritest runs critest against handler h and returns the per-spec
// results from its JSON report and ginkgo's summary. Its full output and
// report stay in .bin/critest-logs, named name.log and name.json.
func runCritest(c *harness.Containerd, critest, h, name string, skips []string) (map[string]specResult, string, error) {
	bin, err := harness.BinDir()
	if err != nil {
		return nil, "", err
	}
	logDir := filepath.Join(bin, "critest-logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, "", err
	}
	logPath := filepath.Join(logDir, name+".log")
	jsonPath := filepath.Join(logDir, name+".json")
	os.Remove(jsonPath)
	ep := "unix://" + c.Address
	args := []string{
		"--runtime-endpoint", ep, "--image-endpoint", ep, "--runtime-handler", h,
		"--ginkgo.no-color", "--ginkgo.json-report=" + jsonPath,
	}
	for _, s := range skips {
		args = append(args, "--ginkgo.skip="+s)
	}
	logf("running critest --runtime-handler %s (output: %s)", h, logPath)
	out, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(critest, args...)
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = out, out
	runErr := cmd.Run()
	out.Close()
	logData, _ := os.ReadFile(logPath)
	summary := strings.Join(summaryRE.FindAllString(string(logData), -1), "; ")
	res, err := readReport(jsonPath)
	if err != nil {
		return nil, summary, fmt.Errorf("report: %v (critest: %v)", err, runErr)
	}
	if runErr != nil && summary == "" {
		return res, summary, fmt.Errorf("critest: %v", runErr)
	}
	return res, summary, nil
}

func readReport(path string) (map[string]specResult, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var reports []ginkgoReport
	if err := json.Unmarshal(data, &reports); err != nil {
		return nil, err
	}
	res := map[string]specResult{}
	for _, r := range reports {
		for _, s := range r.SpecReports {
			name := strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " ")
			if s.LeafNodeType != "It" {
				name = s.LeafNodeType + " " + name
				if s.State == "passed" {
					continue
				}
			}
			msg := s.Failure.Message
			if i := strings.Index(msg, "\n"); i >= 0 {
				msg = msg[:i]
			}
			if s.Failure.Location.FileName != "" {
				msg = fmt.Sprintf("%s:%d: %s", filepath.Base(s.Failure.Location.FileName), s.Failure.Location.LineNumber, msg)
			}
			res[name] = specResult{State: s.State, Message: msg}
		}
	}
	return res, nil
}

// countStates summarizes results: totals by state.
func countStates(res map[string]specResult) string {
	counts := map[string]int{}
	for _, r := range res {
		counts[r.State]++
	}
	var other []string
	for s, n := range counts {
		if s != "passed" && s != "failed" && s != "skipped" {
			other = append(other, fmt.Sprintf("%d %s", n, s))
		}
	}
	sort.Strings(other)
	line := fmt.Sprintf("%d passed, %d failed, %d skipped of %d specs", counts["passed"], counts["failed"], counts["skipped"], len(res))
	if len(other) > 0 {
		line += " (" + strings.Join(other, ", ") + ")"
	}
	return line
}

// compare lists the specs whose state differs between a and b.
func compare(a, b map[string]specResult) []string {
	names := map[string]bool{}
	for n := range a {
		names[n] = true
	}
	for n := range b {
		names[n] = true
	}
	var out []string
	for n := range names {
		ra, rb := a[n], b[n]
		if ra.State == rb.State {
			continue
		}
		line := fmt.Sprintf("%s: %s=%s %s=%s", n, handlers[0], or(ra.State, "absent"), handlers[1], or(rb.State, "absent"))
		if rb.Message != "" {
			line += " (" + handlers[1] + ": " + rb.Message + ")"
		} else if ra.Message != "" {
			line += " (" + handlers[0] + ": " + ra.Message + ")"
		}
		out = append(out, line)
	}
	sort.Strings(out)
	return out
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func sortedNames(res map[string]specResult) []string {
	var out []string
	for n := range res {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// netnsList returns the named network namespaces.
func netnsList() map[string]bool {
	set := map[string]bool{}
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		set[e.Name()] = true
	}
	return set
}

// portmapChains are the nat chains the portmap plugin creates once and
// never removes; hostportJumps are its rules jumping to them.
var (
	portmapChains = []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"}
	hostportJumps = [][]string{
		{"PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
		{"OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
		{"POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ"},
	}
)

// natChains returns the names of the chains of the nat table.
func natChains() map[string]bool {
	set := map[string]bool{}
	out, _ := exec.Command("iptables-save", "-t", "nat").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, ":") {
			set[strings.Fields(l[1:])[0]] = true
		}
	}
	return set
}

// removePortmapChains removes portmap's shared chains and the rules
// jumping to them (when this run created them).
func removePortmapChains() {
	for _, rule := range hostportJumps {
		for i := 0; i < 10; i++ {
			if exec.Command("iptables", append([]string{"-t", "nat", "-D"}, rule...)...).Run() != nil {
				break
			}
		}
	}
	for _, c := range portmapChains {
		exec.Command("iptables", "-t", "nat", "-F", c).Run()
		exec.Command("iptables", "-t", "nat", "-X", c).Run()
	}
}

// reportLeftovers runs after containerd's cleanup: it removes what the run
// created and containerd did not (the bridge, named network namespaces,
// portmap's nat chains when they did not exist before), then checks that
// nothing is left: bridge, netns, the temp dir, mounts and processes
// referencing it, CNI iptables chains.
func reportLeftovers(t *testing.T, dir string, netnsBefore, chainsBefore map[string]bool) {
	var found []string
	if !chainsBefore[portmapChains[0]] {
		removePortmapChains()
	}
	if exec.Command("ip", "link", "show", bridgeName).Run() == nil {
		exec.Command("ip", "link", "delete", bridgeName).Run()
	}
	for ns := range netnsList() {
		if !netnsBefore[ns] {
			found = append(found, "netns "+ns+" (removed)")
			exec.Command("ip", "netns", "delete", ns).Run()
		}
	}
	if exec.Command("ip", "link", "show", bridgeName).Run() == nil {
		found = append(found, "link "+bridgeName)
	}
	for ns := range netnsList() {
		if !netnsBefore[ns] {
			found = append(found, "netns "+ns)
		}
	}
	if dir != "" {
		if _, err := os.Stat(dir); err == nil {
			found = append(found, "dir "+dir)
		}
		if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
			for _, l := range strings.Split(string(mi), "\n") {
				if strings.Contains(l, dir) {
					found = append(found, "mount "+l)
				}
			}
		}
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if cl, err := os.ReadFile(p); err == nil && strings.Contains(string(cl), dir) {
				found = append(found, "process "+filepath.Base(filepath.Dir(p))+" "+strings.ReplaceAll(string(cl), "\x00", " "))
			}
		}
	}
	for c := range natChains() {
		if strings.HasPrefix(c, "CNI-") && !chainsBefore[c] {
			found = append(found, "iptables nat chain "+c)
		}
	}
	if len(found) == 0 {
		fmt.Println("leftovers: none (bridge, netns, temp dir, mounts, processes, CNI chains)")
		return
	}
	for _, f := range found {
		t.Errorf("leftover: %s", f)
	}
}
