package cgroup

import (
	"bytes"
	"testing"

	cgroups "github.com/containerd/cgroups/v3"
)

// FuzzParseProcCgroup: /proc/PID/cgroup of any content parses without a
// panic, and where cgroups/v3 reads it without error, both read the same
// paths. Carriage returns are left out of the comparison: the library's
// line scanner drops one before a newline, which the kernel never writes
// and we keep as part of the path.
func FuzzParseProcCgroup(f *testing.F) {
	for _, s := range []string{
		"12:cpu,cpuacct:/kubepods/pod1/c1\n4:memory:/kubepods/pod1/c1\n1:name=systemd:/x\n0::/unified/path\n",
		"0::/\n",
		"0::/a:b\n",
		"1:a,,b:/x\n",
		"3:pids:/with space\n2:blkio:\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := parseProcCgroup(b)
		if bytes.IndexByte(b, '\r') >= 0 {
			return
		}
		want, unified, err := cgroups.ParseCgroupFromReaderUnified(bytes.NewReader(b))
		if err != nil {
			return
		}
		if unified != "" {
			want[""] = unified
		}
		if p, ok := got[""]; ok && p == "" {
			delete(got, "") // the library cannot tell an empty unified path from none
		}
		if len(got) != len(want) {
			t.Fatalf("%q: got %q, cgroups/v3 %q", b, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%q: %q is %q, cgroups/v3 says %q", b, k, got[k], v)
			}
		}
	})
}
