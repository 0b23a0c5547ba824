//go:build critest && e2e

package critest

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// localRegistry is an in-memory registry listening on 127.0.0.1 only.
type localRegistry struct {
	Host string // 127.0.0.1:PORT
	srv  *http.Server
}

func startRegistry() (*localRegistry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	go srv.Serve(ln)
	return &localRegistry{Host: ln.Addr().String(), srv: srv}, nil
}

func (r *localRegistry) Close() { r.srv.Close() }

// Push writes each image under its upstream reference with the registry
// host replaced by the local one (the path is what mirrors request).
func (r *localRegistry) Push(images map[string]v1.Image) error {
	refs := make([]string, 0, len(images))
	for ref := range images {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		_, path, ok := strings.Cut(ref, "/")
		if !ok {
			return fmt.Errorf("reference %q has no registry", ref)
		}
		local, err := name.ParseReference(r.Host+"/"+path, name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.Write(local, images[ref]); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
	}
	return nil
}

// mirroredRegistries are the upstream registries containerd resolves
// through the local registry.
var mirroredRegistries = []string{"registry.k8s.io", "gcr.io", "docker.io"}

// writeHosts writes one <registry>/hosts.toml per mirrored registry into
// dir, each sending pulls and resolves to the local registry.
func (r *localRegistry) writeHosts(dir string) error {
	for _, reg := range mirroredRegistries {
		server := "https://" + reg
		body := fmt.Sprintf("server = %q\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", server, r.Host)
		d := filepath.Join(dir, reg)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}
