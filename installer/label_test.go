package installer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// apiServer is the part of a Kubernetes API server the installer talks
// to: GET and JSON merge PATCH of one Node's labels, with a bearer token.
type apiServer struct {
	*httptest.Server
	mu      sync.Mutex
	labels  map[string]string // nil: the Node object does not exist
	patches int
	fail    bool // answer 500
}

func newAPIServer(t *testing.T) *apiServer {
	s := &apiServer{labels: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Header.Get("Authorization") != "Bearer test-token":
		http.Error(w, "unauthorized", http.StatusUnauthorized)
	case r.URL.Path != "/api/v1/nodes/node-a":
		http.NotFound(w, r)
	case s.fail:
		http.Error(w, "etcd is sad", http.StatusInternalServerError)
	case s.labels == nil:
		http.Error(w, `nodes "node-a" not found`, http.StatusNotFound)
	case r.Method == http.MethodGet:
		json.NewEncoder(w).Encode(map[string]any{"metadata": map[string]any{"name": "node-a", "labels": s.labels}})
	case r.Method == http.MethodPatch && r.Header.Get("Content-Type") == "application/merge-patch+json":
		s.patches++
		var p struct {
			Metadata struct {
				Labels map[string]*string `json:"labels"`
			} `json:"metadata"`
		}
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for k, v := range p.Metadata.Labels {
			if v == nil {
				delete(s.labels, k)
			} else {
				s.labels[k] = *v
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"metadata": map[string]any{"labels": s.labels}})
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// set changes the Node object under the server's lock.
func (s *apiServer) set(f func(s *apiServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *apiServer) label() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.labels[NodeLabel], s.patches
}

// syncBuffer is a log written by KeepLabel's goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

const testInterval = 20 * time.Millisecond

// keepLabel installs on a bed, labels the node on a fake API server as
// `run` does, and runs KeepLabel until the test ends.
func keepLabel(t *testing.T) (*bed, *apiServer, *syncBuffer) {
	t.Helper()
	b := newBed(t, configV3)
	b.install()
	s := newAPIServer(t)
	token := filepath.Join(t.TempDir(), "token")
	mustWrite(t, token, "test-token\n", 0o600)
	n := &Node{Name: "node-a", Server: s.URL, tokenFile: token, client: s.Client()}
	if err := n.Label(context.Background()); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	o := b.opts
	o.Log = log
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { KeepLabel(ctx, o, n, testInterval); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return b, s, log
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
	}
}

// stays checks that cond holds over ten periods.
func stays(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * testInterval); time.Now().Before(end); time.Sleep(testInterval / 4) {
		if !cond() {
			t.Fatalf("%s: not held for 10 periods", what)
		}
	}
}

// A label removed from an intact installation comes back within a
// period; while it is there, nothing is written to the API server.
func TestKeepLabelRestoresLabel(t *testing.T) {
	_, s, log := keepLabel(t)
	stays(t, "no patch while labelled", func() bool { _, n := s.label(); return n == 1 })
	s.set(func(s *apiServer) { delete(s.labels, NodeLabel) })
	eventually(t, "label back", func() bool { l, _ := s.label(); return l == "true" })
	if !strings.Contains(log.String(), "was missing: set again") {
		t.Errorf("log:\n%s\nwant the label's return", log)
	}
}

// The Node object deleted and registered again (without the label), the
// API server failing meanwhile: errors are logged, the keeper carries on
// and labels the new object.
func TestKeepLabelNodeReregistered(t *testing.T) {
	_, s, log := keepLabel(t)
	s.set(func(s *apiServer) { s.labels = nil })
	eventually(t, "not-found logged", func() bool { return strings.Contains(log.String(), "404 Not Found") })
	s.set(func(s *apiServer) { s.fail = true })
	eventually(t, "500 logged", func() bool { return strings.Contains(log.String(), "etcd is sad") })
	s.set(func(s *apiServer) { s.fail, s.labels = false, map[string]string{"kubernetes.io/hostname": "node-a"} })
	eventually(t, "label on the new Node", func() bool { l, _ := s.label(); return l == "true" })
}

// An installation that is no longer intact is not advertised: the label
// goes and stays off, the reason is logged once, nothing is re-installed
// (no file written, containerd not restarted). A new install brings the
// label back.
func TestKeepLabelBrokenInstallation(t *testing.T) {
	b, s, log := keepLabel(t)
	restarts := b.restart.n
	if err := os.Remove(b.opts.host(b.opts.DropInPath())); err != nil {
		t.Fatal(err)
	}
	eventually(t, "label removed", func() bool { l, _ := s.label(); return l == "" })
	s.set(func(s *apiServer) { s.labels[NodeLabel] = "true" }) // someone labels it by hand
	eventually(t, "label removed again", func() bool { l, _ := s.label(); return l == "" })
	stays(t, "label off", func() bool { l, _ := s.label(); return l == "" })
	if b.exists(b.opts.DropInPath()) || b.restart.n != restarts {
		t.Errorf("drop-in back %v, %d restarts: the keeper re-installed", b.exists(b.opts.DropInPath()), b.restart.n-restarts)
	}
	if n := strings.Count(log.String(), "ERROR node node-a: installation not intact"); n != 1 {
		t.Errorf("log:\n%s\nwant the broken installation reported once, got %d", log, n)
	}
	b.install()
	eventually(t, "label back after install", func() bool { l, _ := s.label(); return l == "true" })
}

// While an uninstall is requested the label stays off although the
// installation is intact (watch pods are draining); Install ends that.
func TestKeepLabelUninstallRequested(t *testing.T) {
	b, s, _ := keepLabel(t)
	if err := RequestUninstall(b.opts); err != nil {
		t.Fatal(err)
	}
	s.set(func(s *apiServer) { delete(s.labels, NodeLabel) })
	stays(t, "label off while uninstalling", func() bool { l, _ := s.label(); return l == "" })
	b.install()
	eventually(t, "label back after install", func() bool { l, _ := s.label(); return l == "true" })
}

// Check tells an intact installation from each way of losing it.
func TestCheck(t *testing.T) {
	b := newBed(t, configV3)
	if err := Check(b.opts); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("before install: %v, want ErrNotInstalled", err)
	}
	b.install()
	if err := Check(b.opts); err != nil {
		t.Fatalf("after install: %v", err)
	}
	for name, breakIt := range map[string]func(b *bed){
		"binary gone":     func(b *bed) { os.Remove(b.opts.host(b.opts.ShimPath())) },
		"binary not exec": func(b *bed) { os.Chmod(b.opts.host(b.opts.ShimPath()), 0o644) },
		"drop-in gone":    func(b *bed) { os.Remove(b.opts.host(b.opts.DropInPath())) },
		"drop-in edited":  func(b *bed) { mustWrite(b.t, b.opts.host(b.opts.DropInPath()), "version = 3\n", 0o644) },
		"import gone":     func(b *bed) { mustWrite(b.t, b.opts.host(DefaultConfig), configV3, 0o600) },
		"config broken":   func(b *bed) { mustWrite(b.t, b.opts.host(DefaultConfig), "version = 3\n[x", 0o600) },
		"restart pending": func(b *bed) { mustWrite(b.t, b.opts.host(filepath.Join(DefaultConfDir, pendingName)), "", 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			b := newBed(t, configV3)
			b.install()
			breakIt(b)
			err := Check(b.opts)
			if !errors.Is(err, ErrNotInstalled) {
				t.Fatalf("Check: %v, want ErrNotInstalled", err)
			}
			t.Log(err)
		})
	}
}

// The uninstall request lives until the registration is gone: an
// uninstall that waits for watch tasks keeps it, a complete one removes
// it, as does an install.
func TestUninstallRequestLifetime(t *testing.T) {
	b := newBed(t, configV3)
	b.install()
	marker := filepath.Join(DefaultConfDir, uninstallName)
	if err := RequestUninstall(b.opts); err != nil || !b.exists(marker) {
		t.Fatalf("request: %v, marker %v", err, b.exists(marker))
	}
	b.install()
	if b.exists(marker) {
		t.Error("marker left by an install")
	}
	mustWrite(t, b.opts.host(filepath.Join(DefaultStateDir, taskDir, "k8s.io", "t1", "shim-binary-path")), b.opts.ShimPath(), 0o644)
	RequestUninstall(b.opts)
	if r := b.uninstall(); len(r.InUse) != 1 || !b.exists(marker) {
		t.Fatalf("uninstall in use: %+v, marker %v; want it kept", r, b.exists(marker))
	}
	os.RemoveAll(b.opts.host(DefaultStateDir))
	if b.uninstall(); b.exists(marker) {
		t.Error("marker left by a complete uninstall")
	}
}
