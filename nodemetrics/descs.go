package nodemetrics

import "github.com/prometheus/client_golang/prometheus"

// Label sets, following kube-state-metrics and cAdvisor.
var (
	containerLabels = []string{"namespace", "pod", "uid", "container"}
	exitLabels      = []string{"namespace", "pod", "uid", "container", "kind", "reason", "exit_code"}
	// A shim serves one pod: its pod, the task it was started for (the
	// sandbox in CRI) and its pid.
	shimLabelNames = []string{"namespace", "pod", "uid", "sandbox_id", "pid"}
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("watch_"+name, help, labels, nil)
}

var (
	descLastExitCode = desc("container_last_terminated_exit_code", "Exit code of the container's last termination.", containerLabels...)
	descLastReason   = desc("container_last_terminated_reason", "Reason of the container's last termination (Completed, Error, OOMKilled): 1 for the reason.", "namespace", "pod", "uid", "container", "reason")
	descLastTime     = desc("container_last_terminated_timestamp_seconds", "Time of the container's last termination, in seconds since the epoch.", containerLabels...)
	descExits        = desc("exits_total", "Exits recorded in the node log since the collector started, by kind (sandbox, container, exec), reason and exit code.", exitLabels...)

	descLogUp        = desc("nodelog_up", "1 if the node log was read at this scrape, 0 if it could not be (missing, unreadable).")
	descLogBytes     = desc("nodelog_bytes", "Bytes of the node log's files.")
	descLogSegments  = desc("nodelog_segments", "Segments of the node log.")
	descLogRetention = desc("nodelog_retention_seconds", "How long the series of deleted pods stay (the log's retention).")
	descLogRevision  = desc("nodelog_revision", "Revision of the node log's last record.")
	descLogSkipped   = desc("nodelog_skipped_lines_total", "Committed log lines the collector could not parse and skipped.")
	descLogRelists   = desc("nodelog_relists_total", "Times the collector's cursor had expired and it started again from the log's state (exits in between are not counted).")

	descShims           = desc("shims", "Running watch shim servers writing this node log.")
	descShimUp          = desc("shim_up", "1 if the shim answered for its counters, 0 if not.", shimLabelNames...)
	descEventsQueued    = desc("shim_events_queued_total", "Events the shim queued for containerd.", shimLabelNames...)
	descEventsSent      = desc("shim_events_sent_total", "Events containerd acknowledged.", shimLabelNames...)
	descEventsRetried   = desc("shim_events_retried_total", "Failed sends of events that the shim retries.", shimLabelNames...)
	descEventsUnsent    = desc("shim_events_unsent", "Events queued and not yet acknowledged by containerd.", shimLabelNames...)
	descOldestUnsent    = desc("shim_oldest_unsent_event_age_seconds", "Age of the oldest event not yet acknowledged by containerd (0 when none).", shimLabelNames...)
	descExitLatency     = desc("shim_exit_publish_latency_seconds", "Time from a process's exit to containerd's acknowledgement of its TaskExit.", shimLabelNames...)
	descShimLogAppended = desc("shim_log_appended_total", "Records the shim appended to the node log.", shimLabelNames...)
	descShimLogFailed   = desc("shim_log_failed_total", "Records the node log refused (unwritable or full directory); the events still went to containerd.", shimLabelNames...)
)

var allDescs = []*prometheus.Desc{
	descLastExitCode, descLastReason, descLastTime, descExits,
	descLogUp, descLogBytes, descLogSegments, descLogRetention, descLogRevision, descLogSkipped, descLogRelists,
	descShims, descShimUp, descEventsQueued, descEventsSent, descEventsRetried, descEventsUnsent,
	descOldestUnsent, descExitLatency, descShimLogAppended, descShimLogFailed,
}
