package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// redisKill kills the Redis server, and its Stop starts it again. The fault
// touches every node, because every node loses its backplane; Fault.Nodes
// names only topology.Redis, which checkers read as all nodes.
type redisKill struct{}

func (redisKill) Kind() string { return KindRedisKill }

// Start kills Redis. It draws nothing from rng.
func (redisKill) Start(ctx context.Context, t topology.Topology, _ *rand.Rand) (history.Fault, error) {
	desc := history.Fault{Kind: KindRedisKill, Detail: "kill " + topology.Redis, Nodes: []string{topology.Redis}}
	var err error
	desc.Mechanism, err = t.Kill(ctx, topology.Redis)
	if err != nil {
		return desc, fmt.Errorf("nemesis: kill %s: %w", topology.Redis, err)
	}
	return desc, nil
}

// Stop restarts Redis.
func (redisKill) Stop(ctx context.Context, t topology.Topology) error {
	if _, err := t.Restart(ctx, topology.Redis); err != nil {
		return fmt.Errorf("nemesis: restart %s after kill: %w", topology.Redis, err)
	}
	return nil
}

// redisPause freezes the Redis server without closing its sockets, and its
// Stop resumes it. Like redisKill it touches every node.
type redisPause struct{}

func (redisPause) Kind() string { return KindRedisPause }

// Start freezes Redis. It draws nothing from rng.
func (redisPause) Start(ctx context.Context, t topology.Topology, _ *rand.Rand) (history.Fault, error) {
	desc := history.Fault{Kind: KindRedisPause, Detail: "pause " + topology.Redis, Nodes: []string{topology.Redis}}
	var err error
	desc.Mechanism, err = t.Pause(ctx, topology.Redis)
	if err != nil {
		return desc, fmt.Errorf("nemesis: pause %s: %w", topology.Redis, err)
	}
	return desc, nil
}

// Stop resumes Redis.
func (redisPause) Stop(ctx context.Context, t topology.Topology) error {
	if _, err := t.Resume(ctx, topology.Redis); err != nil {
		return fmt.Errorf("nemesis: resume %s after pause: %w", topology.Redis, err)
	}
	return nil
}
