package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// kill kills a random node at once, like SIGKILL, and its Stop starts the
// node again as a new incarnation.
type kill struct {
	node string
}

func (k *kill) Kind() string { return KindKill }

// Start draws a node from t.Nodes() and kills it. The scheduler passes a
// topology whose Nodes() lists only the nodes no other node fault holds.
func (k *kill) Start(ctx context.Context, t topology.Topology, rng *rand.Rand) (history.Fault, error) {
	node, err := drawNode(t, rng, KindKill)
	if err != nil {
		return history.Fault{Kind: KindKill}, err
	}
	k.node = node
	desc := history.Fault{Kind: KindKill, Detail: "kill " + node, Nodes: []string{node}}
	desc.Mechanism, err = t.Kill(ctx, node)
	if err != nil {
		return desc, fmt.Errorf("nemesis: kill %s: %w", node, err)
	}
	return desc, nil
}

// Stop restarts the killed node.
func (k *kill) Stop(ctx context.Context, t topology.Topology) error {
	if _, err := t.Restart(ctx, k.node); err != nil {
		return fmt.Errorf("nemesis: restart %s after kill: %w", k.node, err)
	}
	return nil
}

// drawNode returns a random node of t.
func drawNode(t topology.Topology, rng *rand.Rand, kind string) (string, error) {
	nodes := t.Nodes()
	if len(nodes) == 0 {
		return "", fmt.Errorf("nemesis: %s: no node is free of other faults", kind)
	}
	return nodes[rng.IntN(len(nodes))].ID, nil
}
