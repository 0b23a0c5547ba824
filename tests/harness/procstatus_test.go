//go:build e2e

package harness

import (
	"os"
	"testing"
)

// TestReadProcStatus reads the test binary's own status: threads, some
// anonymous memory, stdio, and one more fd once a file is opened.
func TestReadProcStatus(t *testing.T) {
	before, err := ReadProcStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	after, err := ReadProcStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.Threads < 1 || before.RssAnon <= 0 || before.FDs < 3 {
		t.Errorf("status %+v: want threads, anonymous memory and stdio fds", before)
	}
	if after.FDs != before.FDs+1 {
		t.Errorf("fds %d after opening a file, before %d: want one more", after.FDs, before.FDs)
	}
	if _, err := ReadProcStatus(1 << 30); err == nil {
		t.Errorf("status of a pid that cannot exist: no error")
	}
}
