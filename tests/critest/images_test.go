//go:build critest && e2e

package critest

import (
	"testing"

	"github.com/watchshim/containerd-shim-watch-v2/tests/harness"
)

// TestImagesFingerprint builds the stand-in images twice and checks both
// builds are identical; it logs the fingerprint to compare across runs.
func TestImagesFingerprint(t *testing.T) {
	bin, err := harness.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	var fps []string
	for i := 0; i < 2; i++ {
		images, err := buildImages(t, bin)
		if err != nil {
			t.Fatal(err)
		}
		fp, err := fingerprint(images)
		if err != nil {
			t.Fatal(err)
		}
		fps = append(fps, fp)
	}
	if fps[0] != fps[1] {
		t.Fatalf("stand-in images differ between two builds: %s != %s", fps[0], fps[1])
	}
	t.Logf("fingerprint %.16s", fps[0])
}
