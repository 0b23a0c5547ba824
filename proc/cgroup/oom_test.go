package cgroup

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOOMKilledAt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  bool
	}{
		{"v2 killed", map[string]string{"memory.events": "low 0\nhigh 0\nmax 4\noom 3\noom_kill 1\noom_group_kill 0\n"}, true},
		{"v2 not killed", map[string]string{"memory.events": "low 0\nhigh 0\nmax 4\noom 3\noom_kill 0\noom_group_kill 0\n"}, false},
		{"v2 first line", map[string]string{"memory.events": "oom_kill 12"}, true},
		{"v1 killed", map[string]string{"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"}, true},
		{"v1 not killed", map[string]string{"memory.oom_control": "oom_kill_disable 0\nunder_oom 1\noom_kill 0\n"}, false},
		{"v1 kernel without counter", map[string]string{"memory.oom_control": "oom_kill_disable 0\nunder_oom 1\n"}, false},
		{"v2 without counter falls back to v1", map[string]string{
			"memory.events":      "low 0\noom 1\n",
			"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
		}, true},
		{"garbage value", map[string]string{"memory.events": "oom_kill many\n"}, false},
		{"no files", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := oomKilledAt(dir); got != tc.want {
				t.Fatalf("oomKilledAt = %v, want %v", got, tc.want)
			}
		})
	}
	if oomKilledAt(filepath.Join(t.TempDir(), "missing")) {
		t.Fatal("oomKilledAt of a missing cgroup is true")
	}
}
