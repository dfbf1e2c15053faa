package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// pause freezes a random node without closing its sockets, like SIGSTOP,
// and its Stop resumes it.
type pause struct {
	node string
}

func (p *pause) Kind() string { return KindPause }

// Start draws a node from t.Nodes() and freezes it. The scheduler passes a
// topology whose Nodes() lists only the nodes no other node fault holds.
func (p *pause) Start(ctx context.Context, t topology.Topology, rng *rand.Rand) (history.Fault, error) {
	node, err := drawNode(t, rng, KindPause)
	if err != nil {
		return history.Fault{Kind: KindPause}, err
	}
	p.node = node
	desc := history.Fault{Kind: KindPause, Detail: "pause " + node, Nodes: []string{node}}
	desc.Mechanism, err = t.Pause(ctx, node)
	if err != nil {
		return desc, fmt.Errorf("nemesis: pause %s: %w", node, err)
	}
	return desc, nil
}

// Stop resumes the frozen node.
func (p *pause) Stop(ctx context.Context, t topology.Topology) error {
	if _, err := t.Resume(ctx, p.node); err != nil {
		return fmt.Errorf("nemesis: resume %s after pause: %w", p.node, err)
	}
	return nil
}
