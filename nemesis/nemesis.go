// Package nemesis injects faults into a running topology on a schedule drawn
// from the run's seed, records each fault's start and end in the history,
// and ends every fault in a final heal. Each fault type lives in its own
// file and implements Fault.
package nemesis

import (
	"context"
	"math/rand/v2"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// Fault is one fault type. A Fault value handles one injection at a time:
// the nemesis calls Start, later Stop, and never Start twice without a Stop
// in between.
type Fault interface {
	// Kind is the fault type as named in --nemesis, e.g. "partition".
	Kind() string
	// Start picks its targets with rng, injects the fault and describes
	// it. It returns an error wrapping topology.ErrUnsupported when the
	// topology cannot inject it. Start draws from rng in a fixed order, so
	// the same rng state picks the same targets. The nemesis fills in the
	// returned Fault's ID and Kind.
	//
	// On another error Start still returns the parts of the Fault it has
	// filled in (Detail, Nodes), and the nemesis calls Stop once to undo whatever
	// part took effect. Stop may then fail, for example when it restarts a
	// node that was never killed, and the nemesis only logs that.
	//
	// For kill and pause, the nemesis passes a t whose Nodes() lists only
	// the nodes that no other kill or pause holds.
	Start(ctx context.Context, t topology.Topology, rng *rand.Rand) (history.Fault, error)
	// Stop ends the fault that Start injected.
	Stop(ctx context.Context, t topology.Topology) error
}
