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

// printMemory prints, per runtime, the PSS of its shim processes (one per
// pod in containerd 2.x, and one pod each here): the runtime's memory per
// pod, the pod's containers aside.
func (d *demo) printMemory() {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "   runtime\tshim pid\tPSS\n")
	pss := map[string]int{}
	for _, rt := range runtimes {
		pids := d.c.ShimPids(rt.handler)
		if len(pids) == 0 {
			d.r.Fatalf("no %s shim process found", rt.handler)
		}
		var ids []string
		for _, pid := range pids {
			kb, err := pssKiB(pid)
			if err != nil {
				d.r.Fatalf("%s shim %d: %v", rt.handler, pid, err)
			}
			pss[rt.handler] += kb
			ids = append(ids, strconv.Itoa(pid))
		}
		fmt.Fprintf(tw, "   %s\t%s\t%5.1f MiB\n", rt.label, strings.Join(ids, ","), float64(pss[rt.handler])/1024)
	}
	tw.Flush()
	if stock := pss[runtimes[0].handler]; stock > 0 {
		d.detail("watch uses %.2f of the stock shim's memory per pod", float64(pss[runtimes[1].handler])/float64(stock))
	}
}

// pssKiB returns the proportional set size of pid in KiB, from the Pss
// line of /proc/PID/smaps_rollup.
func pssKiB(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "Pss:" {
			return strconv.Atoi(fields[1])
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no Pss in smaps_rollup")
}
