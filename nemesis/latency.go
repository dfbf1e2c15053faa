package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// Bounds of the delay that latency adds. The jitter is up to half the delay.
const (
	MinLatency = 50 * time.Millisecond
	MaxLatency = 200 * time.Millisecond
)

// latency slows a random non-empty subset of the links down by a delay
// between MinLatency and MaxLatency, with jitter. Its Stop heals the whole
// network, like a partition's, so the two never overlap.
type latency struct{}

func (latency) Kind() string { return KindLatency }

// Start draws the links, the delay and the jitter from rng, in that order,
// and degrades the links.
func (latency) Start(ctx context.Context, t topology.Topology, rng *rand.Rand) (history.Fault, error) {
	desc := history.Fault{Kind: KindLatency}
	links := t.Links()
	if len(links) == 0 {
		return desc, fmt.Errorf("nemesis: latency: the topology has no links between nodes: %w", topology.ErrUnsupported)
	}
	chosen := randomSubset(links, rng)
	delay := MinLatency + time.Duration(rng.IntN(int((MaxLatency-MinLatency)/time.Millisecond)+1))*time.Millisecond
	jitter := time.Duration(rng.IntN(int(delay/time.Millisecond)/2+1)) * time.Millisecond

	desc.Detail = fmt.Sprintf("latency %v jitter %v on %s", delay, jitter, formatLinks(chosen))
	desc.Nodes = endpointsInOrder(allVertices(t), chosen)
	var err error
	desc.Mechanism, err = t.Degrade(ctx, chosen, topology.LinkFault{Latency: delay, Jitter: jitter})
	if err != nil {
		return desc, fmt.Errorf("nemesis: %s: %w", desc.Detail, err)
	}
	return desc, nil
}

// Stop removes every link fault.
func (latency) Stop(ctx context.Context, t topology.Topology) error {
	if err := t.HealNetwork(ctx); err != nil {
		return fmt.Errorf("nemesis: end latency: %w", err)
	}
	return nil
}

// allVertices returns the node ids in id order followed by topology.Redis,
// for ordering the endpoints of links on either engine.
func allVertices(t topology.Topology) []string {
	return vertexList(t, EngineRedis)
}
