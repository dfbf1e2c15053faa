package netfault

import "time"

// Status is the fault state of a network namespace, as ReadStatus reads it.
// After Heal, NFTRules is 0 and HasDelay is false.
type Status struct {
	// NFTRules counts the rules in the table inet wscluster.
	NFTRules int `json:"nft_rules"`
	// Qdiscs lists every qdisc on every interface, including the kernel's
	// defaults such as noqueue.
	Qdiscs []QdiscInfo `json:"qdiscs"`
	// NFQueue is the state of the serve process that delays packets
	// through NFQUEUE. It is nil when no serve process listened on the
	// control socket.
	NFQueue *QueueStatus `json:"nfqueue,omitempty"`
}

// QdiscInfo describes one qdisc, with handles written as tc writes them.
type QdiscInfo struct {
	Device string `json:"dev"`
	Kind   string `json:"kind"`
	Handle string `json:"handle"`
	Parent string `json:"parent"`
}

// QueueStatus describes the NFQUEUE delay of a serve process.
type QueueStatus struct {
	// Bound reports whether the process reads the queue. It binds the
	// queue on the first delay request and keeps it until it exits.
	Bound bool `json:"bound"`
	// Queue is the NFQUEUE number that the delay rules send packets to.
	Queue uint16 `json:"queue"`
	// Delay and Jitter are the current delay. A zero Delay accepts the
	// packets that still arrive at once.
	Delay  time.Duration `json:"delay_ns"`
	Jitter time.Duration `json:"jitter_ns"`
	// Pending counts packets held now, waiting for their release time.
	Pending int `json:"pending"`
	// Released counts packets accepted since the queue was bound.
	Released uint64 `json:"released"`
	// ReceiveErrors counts failed reads of the queue socket, such as
	// ENOBUFS when the kernel dropped packets because the process fell
	// behind.
	ReceiveErrors uint64 `json:"receive_errors"`
}

// HasDelay reports whether a netem qdisc, the prio root qdisc (handle
// 1:0) that Degrade installs for per-peer delay, or an NFQUEUE delay is
// present.
func (s Status) HasDelay() bool {
	if s.NFQueue != nil && s.NFQueue.Delay > 0 {
		return true
	}
	for _, q := range s.Qdiscs {
		if q.Kind == "netem" || (q.Kind == "prio" && q.Parent == "root" && q.Handle == "1:0") {
			return true
		}
	}
	return false
}
