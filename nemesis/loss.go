package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// Bounds of the share of packets that loss drops, in percent.
const (
	MinLossPercent = 5
	MaxLossPercent = 30
)

// loss drops a share of the packets on a random non-empty subset of the
// links, on the receiving side. TCP retransmits what is lost, so the links
// stay up but slow and bursty. Only a topology with a real network can drop
// packets; the local one returns topology.ErrUnsupported. Its Stop heals the
// whole network, like a partition's.
type loss struct{}

func (loss) Kind() string { return KindLoss }

// Start draws the links, then the share of packets to drop, from rng.
func (loss) Start(ctx context.Context, t topology.Topology, rng *rand.Rand) (history.Fault, error) {
	desc := history.Fault{Kind: KindLoss}
	links := t.Links()
	if len(links) == 0 {
		return desc, fmt.Errorf("nemesis: loss: the topology has no links between nodes: %w", topology.ErrUnsupported)
	}
	chosen := randomSubset(links, rng)
	percent := MinLossPercent + rng.IntN(MaxLossPercent-MinLossPercent+1)

	desc.Detail = fmt.Sprintf("loss %d%% on %s", percent, formatLinks(chosen))
	desc.Nodes = endpointsInOrder(allVertices(t), chosen)
	var err error
	desc.Mechanism, err = t.Degrade(ctx, chosen, topology.LinkFault{Loss: float64(percent) / 100})
	if err != nil {
		return desc, fmt.Errorf("nemesis: %s: %w", desc.Detail, err)
	}
	return desc, nil
}

// Stop removes every link fault.
func (loss) Stop(ctx context.Context, t topology.Topology) error {
	if err := t.HealNetwork(ctx); err != nil {
		return fmt.Errorf("nemesis: end loss: %w", err)
	}
	return nil
}
