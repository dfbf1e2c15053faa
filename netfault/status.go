package netfault

// Status is the fault state of a network namespace, as ReadStatus reads it.
// After Heal, NFTRules is 0 and HasDelay is false.
type Status struct {
	// NFTRules counts the rules in the table inet wscluster.
	NFTRules int `json:"nft_rules"`
	// Qdiscs lists every qdisc on every interface, including the kernel's
	// defaults such as noqueue.
	Qdiscs []QdiscInfo `json:"qdiscs"`
}

// QdiscInfo describes one qdisc, with handles written as tc writes them.
type QdiscInfo struct {
	Device string `json:"dev"`
	Kind   string `json:"kind"`
	Handle string `json:"handle"`
	Parent string `json:"parent"`
}

// HasDelay reports whether a netem qdisc, or the prio root qdisc (handle
// 1:0) that Degrade installs for per-peer delay, is present.
func (s Status) HasDelay() bool {
	for _, q := range s.Qdiscs {
		if q.Kind == "netem" || (q.Kind == "prio" && q.Parent == "root" && q.Handle == "1:0") {
			return true
		}
	}
	return false
}
