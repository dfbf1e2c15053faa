package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// reset closes every open connection on a random non-empty subset of the
// links, once. New connections go through at once, so the fault is an
// instant: the scheduler stops it right after it starts, and the window
// between its start and stop entries covers only the injection.
type reset struct{}

func (reset) Kind() string { return KindReset }

// Start draws the links from rng and resets their connections.
func (reset) Start(ctx context.Context, t topology.Topology, rng *rand.Rand) (history.Fault, error) {
	desc := history.Fault{Kind: KindReset}
	links := t.Links()
	if len(links) == 0 {
		return desc, fmt.Errorf("nemesis: reset: the topology has no links between nodes: %w", topology.ErrUnsupported)
	}
	chosen := randomSubset(links, rng)
	desc.Detail = "reset " + formatLinks(chosen)
	desc.Nodes = endpointsInOrder(allVertices(t), chosen)
	var err error
	desc.Mechanism, err = t.ResetConnections(ctx, chosen)
	if err != nil {
		return desc, fmt.Errorf("nemesis: %s: %w", desc.Detail, err)
	}
	return desc, nil
}

// Stop does nothing: the connections were closed once and may reconnect.
func (reset) Stop(context.Context, topology.Topology) error { return nil }

func (reset) instant() {}
