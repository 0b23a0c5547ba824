package nodelog

import (
	"errors"
	"os"
	"testing"
)

// TestOff: $WATCH_NODE_LOG_DIR=off turns the log off: Enabled says so and
// Open refuses the directory instead of creating ./off.
func TestOff(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv(DirEnv, Off)
	if Enabled() {
		t.Fatal("Enabled with the log off")
	}
	if w, err := Open(Dir(), Options{}); !errors.Is(err, ErrOff) {
		if w != nil {
			w.Close()
		}
		t.Fatalf("Open(%q): %v, want ErrOff", Dir(), err)
	}
	if _, err := os.Stat(Off); !os.IsNotExist(err) {
		t.Fatalf("Open of the log off made %q: %v", Off, err)
	}
	t.Setenv(DirEnv, t.TempDir())
	if !Enabled() {
		t.Fatal("not Enabled with a directory")
	}
}
