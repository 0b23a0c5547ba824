package shim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// The server, not `start`, creates the group's socket. containerd kills
// `start` when its request is cancelled; a socket made by `start` before
// the server existed would then stay in /run/containerd/s forever. Made by
// the server, it lives and dies with the server (which exits on its own
// when it serves nothing). The server tells `start` over a pipe (its fd 3)
// how the claim went, one line: claimOK, claimServing, or an error.
const (
	claimOK      = "ok"
	claimServing = "serving"
)

var errServing = errors.New("a shim already serves this group")

// listen creates the group's socket, or reports errServing when a live
// shim already holds it. A stale socket is replaced.
func listen(addr string) (*net.UnixListener, error) {
	l, err := newSocket(addr)
	if err == nil {
		return l, nil
	}
	if !addrInUse(err) {
		return nil, err
	}
	if canConnect(addr) {
		return nil, errServing
	}
	if err := removeSocket(addr); err != nil {
		return nil, err
	}
	return newSocket(addr)
}

// claimSocket is the server's side: it listens on addr and reports the
// outcome on report, which it closes. It returns errServing when another
// server holds addr.
func claimSocket(addr string, report io.WriteCloser) (*net.UnixListener, error) {
	defer report.Close()
	l, err := listen(addr)
	word := claimOK
	switch {
	case errors.Is(err, errServing):
		word = claimServing
	case err != nil:
		word = strings.ReplaceAll(err.Error(), "\n", " ")
	}
	// start may be gone (killed by containerd): the server goes on, and
	// exits once it has served nothing for the idle grace.
	_, _ = io.WriteString(report, word+"\n")
	return l, err
}

// awaitClaim is `start`'s side: it reads the server's report. A server that
// exits without one failed before it could listen.
func awaitClaim(r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return fmt.Errorf("read shim server's report: %w", err)
	}
	switch word := strings.TrimSpace(string(b)); word {
	case claimOK, claimServing:
		return nil
	case "":
		return errors.New("shim server exited before listening")
	default:
		return fmt.Errorf("shim server: %s", word)
	}
}

// ownSocket remembers the socket file a server created, so that it
// removes that file and never one a later server made at the same path.
type ownSocket struct {
	path string
	info os.FileInfo
}

func newOwnSocket(path string) ownSocket {
	info, _ := os.Stat(path)
	return ownSocket{path: path, info: info}
}

// remove unlinks the socket if the path still names the file this server
// created.
func (o ownSocket) remove() {
	if o.info == nil {
		return
	}
	if now, err := os.Stat(o.path); err == nil && os.SameFile(now, o.info) {
		_ = os.Remove(o.path)
	}
}
