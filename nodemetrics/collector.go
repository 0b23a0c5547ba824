package nodemetrics

import (
	"context"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watchshim/containerd-shim-watch-v2/exitmon"
	"github.com/watchshim/containerd-shim-watch-v2/nodelog"
	"github.com/watchshim/containerd-shim-watch-v2/task"
)

// Options say where a Collector finds the node's log and shims.
type Options struct {
	// LogDir is the log's directory as the shims see it; "" means
	// nodelog.Dir().
	LogDir string
	// HostRoot is where the host's filesystem is mounted ("" or "/" on the
	// host itself): the log and the shims' sockets are read below it.
	HostRoot string
	// ProcDir is the host's /proc ("" means /proc; a pod needs hostPID).
	ProcDir string
	// Retention is how long the series of a deleted pod stay; 0 means the
	// log's retention (nodelog.EnvOptions).
	Retention time.Duration
	// Logger reports scrape errors; nil means the standard logger.
	Logger *log.Logger
}

// Collector is a prometheus.Collector of the node's watch metrics. It reads
// the log and the shims at each scrape; scrapes are serialized. It is safe
// for concurrent use.
type Collector struct {
	opts Options
	mu   sync.Mutex
	view *logView
}

// New returns a Collector. It reads nothing yet: a log that does not exist
// (no watch pod has run on the node) is not an error.
func New(o Options) *Collector {
	if o.LogDir == "" {
		o.LogDir = nodelog.Dir()
	}
	if o.HostRoot == "" {
		o.HostRoot = "/"
	}
	if o.ProcDir == "" {
		o.ProcDir = "/proc"
	}
	if o.Retention <= 0 {
		o.Retention = nodelog.EnvOptions().Retention
		if o.Retention <= 0 {
			o.Retention = nodelog.DefaultRetention
		}
	}
	if o.Logger == nil {
		o.Logger = log.Default()
	}
	return &Collector{opts: o, view: newLogView(filepath.Join(o.HostRoot, o.LogDir))}
}

// Describe sends every metric's descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect reads the log and the shims and sends their metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.collectLog(ch)
	c.collectShims(ch)
}

func (c *Collector) collectLog(ch chan<- prometheus.Metric) {
	v := c.view
	up := 1.0
	if err := v.update(); err != nil {
		c.opts.Logger.Printf("node metrics: %v", err)
		up = 0
	}
	v.expire(time.Now(), c.opts.Retention)
	gauge(ch, descLogUp, up)
	gauge(ch, descLogRetention, c.opts.Retention.Seconds())
	counter(ch, descLogRelists, float64(v.relists))
	if v.client != nil {
		counter(ch, descLogSkipped, float64(v.client.Skipped()))
	}
	if v.state != nil {
		if cur, err := nodelog.ParseCursor(v.state.Cursor); err == nil {
			gauge(ch, descLogRevision, float64(cur.Rev))
		}
	}
	if n, bytes, err := dirUsage(v.dir); err == nil {
		gauge(ch, descLogSegments, float64(n))
		gauge(ch, descLogBytes, float64(bytes))
	}
	for _, o := range v.owners {
		collectOwner(ch, o)
	}
}

// collectOwner sends one pod's container series.
func collectOwner(ch chan<- prometheus.Metric, o *owner) {
	l := o.labels
	for name, t := range o.last {
		gauge(ch, descLastExitCode, float64(t.code), l.namespace, l.pod, l.uid, name)
		gauge(ch, descLastReason, 1, l.namespace, l.pod, l.uid, name, t.reason)
		gauge(ch, descLastTime, float64(t.at.UnixNano())/1e9, l.namespace, l.pod, l.uid, name)
	}
	for k, n := range o.exits {
		counter(ch, descExits, float64(n), l.namespace, l.pod, l.uid, k.container, k.kind, k.reason, codeLabel(k.code))
	}
}

func (c *Collector) collectShims(ch chan<- prometheus.Metric) {
	shims, err := findShims(c.opts.ProcDir, c.opts.LogDir)
	if err != nil {
		c.opts.Logger.Printf("node metrics: %v", err)
		return
	}
	gauge(ch, descShims, float64(len(shims)))
	for _, s := range shims {
		ctx, cancel := context.WithTimeout(context.Background(), shimTimeout)
		counters, err := readCounters(ctx, c.opts.HostRoot, s.address)
		cancel()
		labels := c.shimLabels(s)
		if err != nil {
			c.opts.Logger.Printf("node metrics: shim %d: %v", s.pid, err)
			gauge(ch, descShimUp, 0, labels...)
			continue
		}
		gauge(ch, descShimUp, 1, labels...)
		collectShim(ch, counters, labels)
	}
}

// shimLabels are a shim's pid, the task it was started for and that task's
// pod, as the log knows it.
func (c *Collector) shimLabels(s shimProc) []string {
	var l podLabels
	if st := c.view.state; st != nil {
		for _, r := range st.Items {
			if r.Namespace == s.namespace && r.ContainerID == s.id && r.ExecID == "" {
				l = podLabels{namespace: r.PodNamespace, pod: r.PodName, uid: r.PodUID}
				break
			}
		}
	}
	return []string{l.namespace, l.pod, l.uid, s.id, strconv.Itoa(s.pid)}
}

// collectShim sends one shim's outbox and log counters.
func collectShim(ch chan<- prometheus.Metric, c task.Counters, labels []string) {
	counter(ch, descEventsQueued, float64(c.EventsQueued), labels...)
	counter(ch, descEventsSent, float64(c.EventsSent), labels...)
	counter(ch, descEventsRetried, float64(c.EventsRetried), labels...)
	gauge(ch, descEventsUnsent, float64(c.EventsQueued-min(c.EventsSent, c.EventsQueued)), labels...)
	gauge(ch, descOldestUnsent, c.OldestUnsent.Seconds(), labels...)
	counter(ch, descShimLogAppended, float64(c.LogAppended), labels...)
	counter(ch, descShimLogFailed, float64(c.LogFailed), labels...)
	h := c.ExitPublished
	buckets := make(map[float64]uint64, len(exitmon.ExitLatencyBounds))
	var cum uint64
	for i, b := range exitmon.ExitLatencyBounds {
		cum += h.Buckets[i]
		buckets[b.Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(descExitLatency, h.Count, h.Sum.Seconds(), buckets, labels...)
}

// dirUsage counts the files in dir and their bytes.
func dirUsage(dir string) (files int, bytes int64, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if filepath.Ext(e.Name()) == ".jsonl" {
			files++
		}
		bytes += fi.Size()
	}
	return files, bytes, nil
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}
