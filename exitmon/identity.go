package exitmon

// Identity tells what a task is within its pod. It is attached to every
// record the task's domain writes to the node log.
type Identity struct {
	ID           string `json:"id"`
	Namespace    string `json:"namespace,omitempty"`
	Sandbox      bool   `json:"sandbox"`
	SandboxID    string `json:"sandbox_id,omitempty"`
	PodName      string `json:"pod_name,omitempty"`
	PodNamespace string `json:"pod_namespace,omitempty"`
	PodUID       string `json:"pod_uid,omitempty"`
	// ContainerName and Image are CRI's names of a workload container.
	ContainerName string `json:"container_name,omitempty"`
	Image         string `json:"image,omitempty"`
}
