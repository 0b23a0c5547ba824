package shim

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// claim runs claimSocket for addr and returns what awaitClaim made of the
// report.
func claim(t *testing.T, addr string) (*net.UnixListener, error, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l, err := claimSocket(addr, w)
	return l, err, awaitClaim(r)
}

// The server claims a free socket; a second server for the same group
// finds it served and says so, and start takes both as success.
func TestClaimSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	addr := "unix://" + path
	l, err, startErr := claim(t, addr)
	if err != nil || startErr != nil {
		t.Fatalf("first claim: %v; start saw %v", err, startErr)
	}
	defer l.Close()
	_, err, startErr = claim(t, addr)
	if err != errServing || startErr != nil {
		t.Fatalf("second claim: %v (want errServing); start saw %v", err, startErr)
	}
}

// A socket file nobody listens on (its server was killed) is replaced.
func TestClaimReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	l, err, startErr := claim(t, "unix://"+path)
	if err != nil || startErr != nil {
		t.Fatalf("claim over a stale socket: %v; start saw %v", err, startErr)
	}
	l.Close()
}

// start fails when the server exits without a report, or reports an error.
func TestAwaitClaimFailures(t *testing.T) {
	if err := awaitClaim(strings.NewReader("")); err == nil {
		t.Error("no report taken as success")
	}
	if err := awaitClaim(strings.NewReader("listen: permission denied\n")); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("error report: %v", err)
	}
	_, err, startErr := claim(t, "unix://"+filepath.Join(t.TempDir(), "no", "such", "\x00dir", "s"))
	if err == nil || startErr == nil {
		t.Errorf("claim of an impossible path: %v; start saw %v", err, startErr)
	}
}

// A server removes its own socket file, never a newer one at its path.
func TestOwnSocketRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	own := newOwnSocket(path)
	// Moved away (not removed, so its inode stays taken) and replaced.
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	own.remove()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("removed a newer server's socket: %v", err)
	}
	newOwnSocket(path).remove()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("own socket not removed: %v", err)
	}
}
