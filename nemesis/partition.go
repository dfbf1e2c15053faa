package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// partition cuts links in one of the shapes of grudge.go. Its Stop heals
// the whole network, because the topology can only remove every cut at
// once. The scheduler therefore never lets two network faults overlap.
type partition struct {
	// shape is the shape to cut, or "" to draw one per injection among the
	// shapes that fit the topology.
	shape  string
	engine string
}

func (p *partition) Kind() string { return KindPartition }

// Start draws the shape and the cut from rng and cuts the links.
func (p *partition) Start(ctx context.Context, t topology.Topology, rng *rand.Rand) (history.Fault, error) {
	desc := history.Fault{Kind: KindPartition}
	vertices := vertexList(t, p.engine)
	shape, err := p.drawShapeName(vertices, rng)
	if err != nil {
		return desc, err
	}
	cut, err := DrawShape(shape, vertices, t.Links(), rng)
	if err != nil {
		return desc, err
	}

	desc.Detail = cut.Detail
	desc.Nodes = cut.Nodes
	desc.Links = linkPairs(cut.Links)
	desc.Mechanism, err = t.Partition(ctx, cut.Links)
	if err != nil {
		return desc, fmt.Errorf("nemesis: partition %s: %w", cut.Detail, err)
	}
	return desc, nil
}

// Stop removes every cut.
func (p *partition) Stop(ctx context.Context, t topology.Topology) error {
	if err := t.HealNetwork(ctx); err != nil {
		return fmt.Errorf("nemesis: end partition: %w", err)
	}
	return nil
}

// drawShapeName returns p.shape, or draws one of the shapes that fit the
// vertices when p.shape is empty.
func (p *partition) drawShapeName(vertices []string, rng *rand.Rand) (string, error) {
	if p.shape != "" {
		return p.shape, nil
	}
	star := isStar(vertices)
	nodes := len(without(vertices, []string{topology.Redis}))
	var fitting []string
	for _, s := range ShapeNames() {
		if nodes >= MinNodes(s, star) {
			fitting = append(fitting, s)
		}
	}
	if len(fitting) == 0 {
		return "", fmt.Errorf("%w: no partition shape fits %d nodes: %w", ErrTooFewNodes, nodes, topology.ErrUnsupported)
	}
	return fitting[rng.IntN(len(fitting))], nil
}

// vertexList returns the node ids in id order, followed by topology.Redis
// on the Redis engine.
func vertexList(t topology.Topology, engine string) []string {
	var vertices []string
	for _, n := range t.Nodes() {
		vertices = append(vertices, n.ID)
	}
	if engine == EngineRedis {
		vertices = append(vertices, topology.Redis)
	}
	return vertices
}

// linkPairs converts links to the form of history.Fault.Links.
func linkPairs(links []topology.Link) [][2]string {
	pairs := make([][2]string, len(links))
	for i, l := range links {
		pairs[i] = l
	}
	return pairs
}
