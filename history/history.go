// Package history records what happens during a suite run, in the shape
// Jepsen uses. Every client operation is an invoke followed by exactly one
// completion (ok, fail or info). Everything a client receives, every fault
// and every readiness probe is an entry of its own. Checkers read the
// history after the run; nothing in it is interpreted while it is written.
package history

import (
	"encoding/json"
)

// Type is the kind of a history entry.
type Type string

// Entry types. An operation is an Invoke followed by one of Ok, Fail or Info
// with the same Process and F. Info means the outcome is unknown, for example
// because the node died or the request timed out: the operation may or may
// not have taken effect.
const (
	Invoke Type = "invoke"
	Ok     Type = "ok"
	Fail   Type = "fail"
	Info   Type = "info"
	// Event is something a client received without asking: a message, a
	// presence event, or the loss of its connection.
	Event Type = "event"
	// Nemesis is the start or the end of a fault (F is FaultStart or
	// FaultStop).
	Nemesis Type = "nemesis"
	// Probe is one sample of a node's /readyz, or a metrics scrape.
	Probe Type = "probe"
	// Phase marks where the run's schedule moves on (F is the phase name).
	Phase Type = "phase"
)

// Operation and event names (Op.F).
const (
	// FConnect: a process dials a node. Ok carries Node and Epoch. Every
	// later operation of the process, until the next FConnect, runs on that
	// connection.
	FConnect = "connect"
	// FDisconnect (Event): the process's connection ended, closed by the
	// server or the network. Error holds the cause.
	FDisconnect = "disconnect"
	// FDrop: the process closes its connection on purpose without leaving
	// its presence channels, like a browser tab that is closed.
	FDrop = "drop"

	FSubscribe   = "subscribe"
	FUnsubscribe = "unsubscribe"
	// FPublish: Value is the exact JSON data sent, which carries the
	// publisher's process, epoch and sequence (see Payload). Ok carries
	// MsgID. Fail carries the JSON-RPC Code (1005 means nothing was
	// delivered anywhere).
	FPublish = "publish"
	// FJoin: Ok carries Members, the cluster-wide roster in the result.
	FJoin  = "join"
	FLeave = "leave"
	// FMembers: Ok carries Members, the cluster-wide roster read on Node.
	FMembers = "members"

	// FMessage (Event): a message notification. Channel, MsgID, Value,
	// QoS and Redelivered are as received.
	FMessage = "message"
	// FPresenceJoin and FPresenceLeave (Event): presence notifications.
	// Member is the member id, EventNode the node the server named.
	FPresenceJoin  = "presence.join"
	FPresenceLeave = "presence.leave"

	// FFaultStart and FFaultStop (Nemesis): Fault describes the fault.
	FFaultStart = "start"
	FFaultStop  = "stop"

	// FReady (Probe): Ready is the node's /readyz verdict; Error is set and
	// Ready nil when the probe got no response (a paused or dead node).
	FReady = "readyz"
	// FMetrics (Probe): Metrics holds the backplane counters of Node,
	// scraped from /metrics. Incarnation separates restarts, because a
	// restarted node's counters start again at zero.
	FMetrics = "metrics"
)

// Phase names, in schedule order (Op.F of Phase entries).
const (
	PhaseSetup    = "setup"    // clients connect, subscribe and join
	PhaseMain     = "main"     // workload and nemesis for the duration
	PhaseHeal     = "heal"     // every fault ended; the final heal
	PhaseRecovery = "recovery" // quiet wait for the cluster to converge
	PhaseFinal    = "final"    // final reads on every node
	PhaseDone     = "done"     // nothing follows but teardown
)

// Process ids that are not client workers.
const (
	ProcessNemesis = -1
	ProcessProbe   = -2
)

// Op is one history entry. Fields that do not apply to an entry are zero and
// omitted from JSON.
type Op struct {
	// Index is the entry's position in the history, from 0.
	Index int `json:"index"`
	// Time is nanoseconds since the run started, from a monotonic clock.
	Time int64 `json:"time"`
	// Type and F name the kind of entry.
	Type Type   `json:"type"`
	F    string `json:"f"`
	// Process is the client worker, or ProcessNemesis or ProcessProbe.
	Process int `json:"process"`
	// Node is the node the process is connected to, or the node a probe,
	// a metrics scrape or a final read is about.
	Node string `json:"node,omitempty"`
	// Epoch counts the process's connections from 1. A delivery belongs to
	// the connection (Process, Epoch) that received it.
	Epoch int `json:"epoch,omitempty"`

	Channel     string          `json:"channel,omitempty"`
	Member      string          `json:"member,omitempty"`
	MsgID       string          `json:"msg_id,omitempty"`
	QoS         int             `json:"qos,omitempty"`
	Redelivered bool            `json:"redelivered,omitempty"`
	Value       json.RawMessage `json:"value,omitempty"`
	// Members is a roster: a join result or a members read.
	Members []Member `json:"members,omitempty"`
	// EventNode is the node a presence.join event names.
	EventNode string `json:"event_node,omitempty"`

	Ready       *bool              `json:"ready,omitempty"`
	Metrics     map[string]float64 `json:"metrics,omitempty"`
	Incarnation string             `json:"incarnation,omitempty"`

	Fault *Fault `json:"fault,omitempty"`

	// Code is the JSON-RPC error code of a Fail.
	Code  int    `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// Member is one roster entry: a member id and the connections that joined
// as it, in the order the server sent them.
type Member struct {
	Member      string       `json:"member"`
	Connections []Connection `json:"connections"`
}

// Connection is one connection in a roster entry.
type Connection struct {
	Node string `json:"node"`
	Conn string `json:"conn"`
}

// Fault kinds, the values of Fault.Kind. A cut of a node's link to Redis
// is a FaultPartition whose Links name the Redis server.
const (
	FaultPartition  = "partition"
	FaultLatency    = "latency"
	FaultReset      = "reset"
	FaultLoss       = "loss"
	FaultKill       = "kill"
	FaultPause      = "pause"
	FaultRedisKill  = "redis-kill"
	FaultRedisPause = "redis-pause"
)

// Fault describes one fault of the nemesis. The same ID appears on its
// FFaultStart and FFaultStop entries.
type Fault struct {
	// ID is unique in the run, e.g. "f3".
	ID string `json:"id"`
	// Kind is the fault type, one of the Fault kind constants.
	Kind string `json:"kind"`
	// Detail is a person-readable description, e.g. "halves [n1] | [n2 n3]".
	Detail string `json:"detail"`
	// Nodes are the nodes the fault touches: the node killed or paused, or
	// every node that lost at least one link. "redis" stands for the Redis
	// server.
	Nodes []string `json:"nodes"`
	// Links are the cut links of a partition, each as two endpoints.
	Links [][2]string `json:"links,omitempty"`
	// Mechanism names how the fault was injected, e.g. "tcp-proxy",
	// "SIGKILL", "SIGSTOP", "nftables", "netem".
	Mechanism string `json:"mechanism"`
}
