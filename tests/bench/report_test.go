//go:build bench

package bench

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// metric describes one figure of the report; Goal is the highest
// acceptable ratio watch/stock (0: no goal, reported for information).
type metric struct {
	Key, Label, Unit string
	Goal             float64
}

var metrics = []metric{
	{"pss_kib_1c", "Shim PSS per pod, pause+1 container", "KiB", 0.35},
	{"pss_kib_5c", "Shim PSS per pod, pause+5 containers", "KiB", 0.35},
	{"pss_late_kib_1c", "Shim PSS per pod, pause+1, 18 s later (after the CPU window)", "KiB", 0.35},
	{"pss_late_kib_5c", "Shim PSS per pod, pause+5, 18 s later (after the CPU window)", "KiB", 0.35},
	{"rss_kib_1c", "Shim RSS per pod, pause+1 container", "KiB", 0},
	{"rss_kib_5c", "Shim RSS per pod, pause+5 containers", "KiB", 0},
	{"anon_kib_1c", "Shim private anon (RssAnon) per pod, pause+1", "KiB", 0},
	{"anon_kib_5c", "Shim private anon (RssAnon) per pod, pause+5", "KiB", 0},
	{"rest_cpu_ms_per_min_1c", "Shim CPU at rest per pod, pause+1 (ms per minute, CRI polling stats)", "ms", 0},
	{"rest_cpu_ms_per_min_5c", "Shim CPU at rest per pod, pause+5 (ms per minute, CRI polling stats)", "ms", 0},
	{"pod_start_ms", "Pod start (CRI RunPodSandbox+CreateContainer+StartContainer), median of pods", "ms", 0.8},
	{"pod_sandbox_ms", "Pod start: RunPodSandbox, median of pods", "ms", 0},
	{"pod_create_ms", "Pod start: CreateContainer, median of pods", "ms", 0},
	{"pod_startctr_ms", "Pod start: StartContainer, median of pods", "ms", 0},
	{"probe_cpu_ms_per_exec", "Exec probes, 1/s in each pod's container: shim CPU per exec, less rest", "ms", 0.5},
	{"probe_p50_ms", "Exec probes: ExecSync latency p50", "ms", 0},
	{"probe_p99_ms", "Exec probes: ExecSync latency p99", "ms", 0},
	{"probe_csw_per_exec", "Exec probes: shim context switches per exec (all threads)", "", 0},
	{"serial_cpu_ms_per_exec", "Serial execs in one container: shim CPU per exec, less rest", "ms", 0.5},
	{"serial_exec_p50_ms", "Serial execs in one container: ExecSync latency p50", "ms", 0},
	{"serial_csw_per_exec", "Serial execs: shim context switches per exec (all threads)", "", 0},
	{"exit_event_p50_ms", "Exit→TaskExit at subscriber, p50 (200 at once)", "ms", 0},
	{"exit_event_p99_ms", "Exit→TaskExit at subscriber, p99 (200 at once)", "ms", 0.5},
	{"exit_event_max_ms", "Exit→TaskExit at subscriber, max (200 at once)", "ms", 0},
	{"exit_send_p99_ms", "Exit→shim sent TaskExit (envelope timestamp), p99 (200 at once)", "ms", 0},
	{"exit_visible_p50_ms", "Exit→visible to a consumer, p50 (200 at once): stock = containerd event subscriber, watch = node log consumer (watchapi)", "ms", 0},
	{"exit_visible_p99_ms", "Exit→visible to a consumer, p99 (200 at once): stock = containerd event subscriber, watch = node log consumer (watchapi)", "ms", 0},
	{"burst200_wait_wall_ms", "200 execs: release→last Wait returned", "ms", 0},
	{"exec500_exit_wall_ms", "500 execs in 1 container: release→last Wait returned", "ms", 0.7},
	{"exec500_other_cpu_ms", "500 execs: everything but the shim, CPU ms per CPU from release to last Wait (the wall with a shim that cost nothing)", "ms", 0},
	{"exec500_total_wall_ms", "500 execs: first Exec→last Wait returned", "ms", 0},
	{"cpu_ms_per_1000_execs", "Shim CPU per 1000 execs (Exec+Start+exit+Wait+Delete)", "ms", 0},
	{"cpu_ms_per_1000_exits", "Shim CPU per 1000 exits (release→last Wait only)", "ms", 0.5},
	{"log_on_cpu_ms_per_1000_exits", "Node log on: watch shim CPU per 1000 exits (200 at once, release→last Wait, schedstat)", "ms", 0},
	{"log_off_cpu_ms_per_1000_exits", "Node log off (WATCH_NODE_LOG_DIR=off): watch shim CPU per 1000 exits, same run", "ms", 0},
	{"log_cpu_extra_pct_exits", "Node log: extra shim CPU per exit, on vs off (%, target ≤ 5)", "%", 0},
	{"log_on_cpu_ms_per_1000_execs", "Node log on: watch shim CPU per 1000 execs (Exec+Start+exit+Wait+Delete, 4 records each)", "ms", 0},
	{"log_off_cpu_ms_per_1000_execs", "Node log off: watch shim CPU per 1000 execs, same run", "ms", 0},
	{"log_cpu_extra_pct_execs", "Node log: extra shim CPU per exec lifecycle, on vs off (%)", "%", 0},
	{"log_bytes_per_lifecycle", "Node log bytes per pod+container+exec lifecycle (12 records)", "B", 0},
	{"log_retained_kib_1000_lifecycles", "Node log disk use with 1,000 pod lifecycles retained (default segment size and retention)", "KiB", 0},
	{"shims_1c", "Shim processes for the pods (1 container each)", "", 0},
	{"shims_5c", "Shim processes for the pods (5 containers each)", "", 0},
	{"goroutines_1c", "Goroutines per pod at rest, 1 container", "", 0},
	{"goroutines_5c", "Goroutines per pod at rest, 5 containers", "", 0},
	{"threads_1c", "Threads per pod at rest, 1 container", "", 0},
	{"threads_5c", "Threads per pod at rest, 5 containers", "", 0},
	{"fds_1c", "Open fds per pod at rest, 1 container", "", 0},
	{"fds_5c", "Open fds per pod at rest, 5 containers", "", 0},
}

// Run is everything one `make bench` measured.
type Run struct {
	Started, Finished     time.Time
	Reps                  int
	Containerd            string
	CPUs                  int
	LoadBefore, LoadAfter string   // /proc/loadavg 1/5/15 min
	Order                 []string // runtime order of each repetition
	// Raw[runtime][metric] holds one value per repetition.
	Raw     map[string]map[string][]float64
	Figures []Figure
}

// Stat summarizes the per-repetition values of one runtime.
type Stat struct {
	Median, Min, Max float64
	Values           []float64
}

// Figure is one row of the table.
type Figure struct {
	metric
	Stock, Watch *Stat
	Ratio        float64 // watch median / stock median, NaN when n/a
	Met          string  // "yes", "no" or "" without a goal
}

func stat(v []float64) *Stat {
	if len(v) == 0 {
		return nil
	}
	s := &Stat{Median: median(v), Min: v[0], Max: v[0], Values: v}
	for _, x := range v {
		s.Min, s.Max = math.Min(s.Min, x), math.Max(s.Max, x)
	}
	return s
}

func (r *Run) summarize() {
	r.CPUs = runtime.NumCPU()
	r.Figures = nil
	for _, m := range metrics {
		f := Figure{metric: m, Stock: stat(r.Raw["runc"][m.Key]), Watch: stat(r.Raw["watch"][m.Key]), Ratio: math.NaN()}
		if f.Stock != nil && f.Watch != nil && f.Stock.Median != 0 {
			f.Ratio = f.Watch.Median / f.Stock.Median
		}
		if m.Goal > 0 {
			f.Met = "no"
			if !math.IsNaN(f.Ratio) && f.Ratio <= m.Goal {
				f.Met = "yes"
			}
		}
		r.Figures = append(r.Figures, f)
	}
}

// write writes results.json, results.md and ratios.png into
// bench-results/<timestamp>/ (BENCH_OUT overrides bench-results), points
// bench-results/latest at it and prints the table.
func (r *Run) write() error {
	r.summarize()
	base := os.Getenv("BENCH_OUT")
	if base == "" {
		base = filepath.Join(os.Getenv("WATCH_REPO_ROOT"), "bench-results")
	}
	name := r.Started.Format("20060102-150405")
	dir := filepath.Join(base, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), data, 0o644); err != nil {
		return err
	}
	md := r.markdown()
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := r.chart(filepath.Join(dir, "ratios.png")); err != nil {
		return err
	}
	latest := filepath.Join(base, "latest")
	os.Remove(latest)
	if err := os.Symlink(name, latest); err != nil {
		return err
	}
	fmt.Printf("\nbench results in %s (and %s)\n\n%s\n", dir, latest, md)
	return nil
}

// MarshalJSON of Figure: NaN is not JSON.
func (f Figure) MarshalJSON() ([]byte, error) {
	var ratio any
	if !math.IsNaN(f.Ratio) {
		ratio = f.Ratio
	}
	return json.Marshal(struct {
		Key, Label, Unit string
		Goal             float64 `json:",omitempty"`
		Stock, Watch     *Stat
		Ratio            any
		Met              string `json:",omitempty"`
	}{f.Key, f.Label, f.Unit, f.Goal, f.Stock, f.Watch, ratio, f.Met})
}

func (r *Run) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# containerd-shim-watch-v2 vs containerd-shim-runc-v2\n\n")
	fmt.Fprintf(&b, "containerd %s, %d repetitions (orders: %s), %d CPUs, load before %s, after %s, %s to %s.\n",
		r.Containerd, r.Reps, strings.Join(r.Order, " / "), r.CPUs, r.LoadBefore, r.LoadAfter,
		r.Started.Format(time.RFC3339), r.Finished.Format(time.RFC3339))
	fmt.Fprintf(&b, "Values are the median / min / max over repetitions of each repetition's value.\n\n")
	fmt.Fprintf(&b, "| metric | stock median | stock min | stock max | watch median | watch min | watch max | ratio watch/stock | goal | met? |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|\n")
	for _, f := range r.Figures {
		label := f.Label
		if f.Unit != "" {
			label += " (" + f.Unit + ")"
		}
		ratio, goal := "n/a", ""
		if !math.IsNaN(f.Ratio) {
			ratio = fmt.Sprintf("%.2f", f.Ratio)
		}
		if f.Goal > 0 {
			goal = fmt.Sprintf("≤ %.2f", f.Goal)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", label, cells(f.Stock), cells(f.Watch), ratio, goal+" | "+f.Met)
	}
	return b.String()
}

func cells(s *Stat) string {
	if s == nil {
		return "n/a | n/a | n/a"
	}
	return num(s.Median) + " | " + num(s.Min) + " | " + num(s.Max)
}

func num(v float64) string {
	switch {
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// chart draws the ratios as horizontal bars, goals as red marks and a
// dashed line at 1 (parity with the stock shim).
func (r *Run) chart(path string) error {
	var labels []string
	var vals plotter.Values
	var goals plotter.XYs
	for _, f := range r.Figures {
		if math.IsNaN(f.Ratio) || strings.HasPrefix(f.Key, "shims_") {
			continue
		}
		// Bars are drawn bottom-up: prepend to keep the table order top-down.
		labels = append([]string{f.Label}, labels...)
		vals = append(plotter.Values{f.Ratio}, vals...)
		for i := range goals {
			goals[i].Y++
		}
		if f.Goal > 0 {
			goals = append(goals, plotter.XY{X: f.Goal, Y: 0})
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("watch / stock shim (median of %d reps; lower is better)", r.Reps)
	p.X.Label.Text = "ratio watch/stock"
	bars, err := plotter.NewBarChart(vals, vg.Points(12))
	if err != nil {
		return err
	}
	bars.Horizontal = true
	bars.Color = color.RGBA{R: 70, G: 110, B: 190, A: 255}
	p.Add(bars)
	if len(goals) > 0 {
		sc, err := plotter.NewScatter(goals)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Shape = draw.BoxGlyph{}
		sc.GlyphStyle.Color = color.RGBA{R: 210, A: 255}
		sc.GlyphStyle.Radius = vg.Points(4)
		p.Add(sc)
		p.Legend.Add("goal", sc)
	}
	maxY := float64(len(vals))
	parity, err := plotter.NewLine(plotter.XYs{{X: 1, Y: -0.5}, {X: 1, Y: maxY - 0.5}})
	if err != nil {
		return err
	}
	parity.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(parity)
	p.Legend.Add("parity (1.0)", parity)
	p.Legend.Top = true
	p.NominalY(labels...)
	p.X.Min = 0
	return p.Save(9*vg.Inch, vg.Length(1.5+0.32*maxY)*vg.Inch, path)
}
