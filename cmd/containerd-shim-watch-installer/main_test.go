package main

import "testing"

// A boolean environment value that is not a boolean is refused, not read
// as false: WATCH_UNINSTALL_ON_EXIT=yes must not silently keep the
// runtime installed when the DaemonSet is deleted.
func TestBadBoolEnvRefused(t *testing.T) {
	for _, env := range []string{"WATCH_UNINSTALL_ON_EXIT", "WATCH_UNINSTALL_FORCE"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv("WATCH_RESTART", "none")
			t.Setenv(env, "yes")
			if c, err := parseFlags("run", nil); err == nil {
				t.Errorf("%s=yes accepted: %+v", env, c)
			}
			t.Setenv(env, "true")
			c, err := parseFlags("run", nil)
			if err != nil {
				t.Fatalf("%s=true: %v", env, err)
			}
			if !c.uninstallOnExit && !c.force {
				t.Errorf("%s=true not read", env)
			}
		})
	}
}
