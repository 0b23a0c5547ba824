//go:build e2e

package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

// printMemory prints, per runtime, the memory of its shim processes (one
// per pod in containerd 2.x, and one pod each here): PSS, and the
// anonymous part of it, which is what each further pod adds. The rest of
// PSS is a share of the binary's code, shared by all the pods of a runtime
// on a node, and here also with any other process running the same file:
// with one pod per runtime it says more about the machine than the shim.
func (d *demo) printMemory() {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "   runtime\tshim pid\tPSS\tanonymous\n")
	anon := map[string]int{}
	for _, rt := range runtimes {
		pids := d.c.ShimPids(rt.handler)
		if len(pids) == 0 {
			d.r.Fatalf("no %s shim process found", rt.handler)
		}
		var ids []string
		var pss int
		for _, pid := range pids {
			m, err := smapsRollup(pid)
			if err != nil {
				d.r.Fatalf("%s shim %d: %v", rt.handler, pid, err)
			}
			pss += m["Pss"]
			anon[rt.handler] += m["Anonymous"]
			ids = append(ids, strconv.Itoa(pid))
		}
		fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\n", rt.label, strings.Join(ids, ","), mib(pss), mib(anon[rt.handler]))
	}
	tw.Flush()
	d.detail("PSS includes a share of the shim's code, which all pods of a runtime share;")
	d.detail("the anonymous memory (heap, stacks) is what each further pod costs.")
	if stock := anon[runtimes[0].handler]; stock > 0 {
		d.detail("watch's anonymous memory per pod is %.2f of the stock shim's", float64(anon[runtimes[1].handler])/float64(stock))
	}
}

func mib(kib int) string { return fmt.Sprintf("%5.1f MiB", float64(kib)/1024) }

// smapsRollup returns the kB fields of /proc/PID/smaps_rollup (Pss,
// Anonymous, ...) in KiB.
func smapsRollup(pid int) (map[string]int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[2] == "kB" {
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				return nil, fmt.Errorf("smaps_rollup %q: %w", sc.Text(), err)
			}
			m[strings.TrimSuffix(fields[0], ":")] = n
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if _, ok := m["Pss"]; !ok {
		return nil, fmt.Errorf("no Pss in smaps_rollup")
	}
	return m, nil
}
