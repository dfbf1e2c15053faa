package workloads

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/history"
)

// Churn timing: a churn worker stays joined for holdMin plus up to
// holdSpread, and rests for restMin plus up to restSpread between two
// joins.
const (
	holdMin    = 50 * time.Millisecond
	holdSpread = 450 * time.Millisecond
	restMin    = 50 * time.Millisecond
	restSpread = 250 * time.Millisecond
)

// How a churn worker ends a membership: leave, drop the connection without
// leaving, keep the membership, or make the connection silent without
// closing it. The shares are 70%, 10%, 15% and 5%. Without
// Config.SilentClients, the silent share is dropped as well, so drops are 15%.
const (
	endLeave = iota
	endDrop
	endKeep
	endSilent
)

// presencePart is the presence workload: one observer and several churn
// workers per node.
type presencePart struct {
	env       *env
	channels  []string
	observers []*worker
	churners  []*churner
}

// churner is a worker that joins, leaves and drops presence memberships.
type churner struct {
	*worker
	channels []string
	// joins counts the process's joins, for unique member ids.
	joins int
	// joined are the channels this connection joined and has not left.
	joined map[string]bool
}

// churnPlan is one round of a churn worker, drawn in full before it starts
// so that the sequence of choices does not depend on outcomes.
type churnPlan struct {
	channel string
	hold    time.Duration
	read    bool
	end     int
	rest    time.Duration
}

// newPresence creates the workers, with process ids from base in node
// order: each node's observer, then its churn workers.
func newPresence(e *env, base int) *presencePart {
	p := &presencePart{env: e}
	for i := range e.cfg.PresenceChannels {
		p.channels = append(p.channels, fmt.Sprintf("presence-%d", i))
	}

	process := base
	for node := range e.cfg.Nodes {
		o := e.newWorker(process, "observer", node)
		// The member id names the connection's epoch, so that after a node
		// dies the observer's old membership can be watched being purged
		// while the observer rejoins elsewhere under a new id.
		home := e.cfg.Nodes[node].ID
		o.onConnect = func() outcome {
			return joinAll(o, p.channels, fmt.Sprintf("obs-%s-p%d.%d", home, o.process, o.epoch))
		}
		p.observers = append(p.observers, o)
		process++

		for range e.cfg.PresenceWorkersPerNode {
			c := &churner{worker: e.newWorker(process, "churn", node), channels: p.channels, joined: map[string]bool{}}
			c.viaProxy = *e.cfg.SilentClients
			// A new connection holds no membership.
			c.onConnect = func() outcome {
				clear(c.joined)
				return outcomeOk
			}
			p.churners = append(p.churners, c)
			process++
		}
	}
	return p
}

// processes returns the number of process ids the part uses.
func (p *presencePart) processes() int {
	return len(p.observers) + len(p.churners)
}

// joinAll joins every channel as member, and stops at the first info
// because the connection is then gone.
func joinAll(w *worker, channels []string, member string) outcome {
	result := outcomeOk
	for _, channel := range channels {
		o := join(w, channel, member)
		result = worst(result, o)
		if o == outcomeInfo {
			break
		}
	}
	return result
}

// join records a presence.join of channel as member, with the roster of the
// result.
func join(w *worker, channel, member string) outcome {
	op := history.Op{F: history.FJoin, Channel: channel, Member: member}
	return w.call(op, func(ctx context.Context, c *client.Client, done *history.Op) error {
		roster, err := c.Join(ctx, channel, member, nil)
		done.Members = toMembers(roster)
		return err
	})
}

// setup connects every worker to its home node; observers join every
// channel.
func (p *presencePart) setup(ctx context.Context) error {
	workers := append([]*worker(nil), p.observers...)
	for _, c := range p.churners {
		workers = append(workers, c.worker)
	}
	errs := make([]error, len(workers))
	spawn(len(workers), func(i int) {
		errs[i] = workers[i].connectHome(ctx)
	})
	return errors.Join(errs...)
}

// run churns and observes until ctx ends.
func (p *presencePart) run(ctx context.Context) {
	spawn(len(p.observers)+len(p.churners), func(i int) {
		if i < len(p.observers) {
			observe(ctx, p.observers[i], p.channels)
			return
		}
		p.churners[i-len(p.observers)].run(ctx)
	})
}

// observeOnly keeps the observers reading until ctx ends. An observer that
// moved away from its home node during the faults goes back first, so every
// node is read during the recovery wait.
func (p *presencePart) observeOnly(ctx context.Context) {
	spawn(len(p.observers), func(i int) {
		o := p.observers[i]
		o.preferHome = true
		if o.conn != nil && !o.conn.isLost() && o.node != o.home {
			o.log.Info("moving back to the home node", "node", o.nodeID(), "home", o.env.cfg.Nodes[o.home].ID)
			o.dropConn()
		}
		observe(ctx, o, p.channels)
	})
}

// observe reads the roster of a random channel every ObserveInterval until
// ctx ends.
func observe(ctx context.Context, o *worker, channels []string) {
	ticker := time.NewTicker(o.env.cfg.ObserveInterval)
	defer ticker.Stop()

	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		channel := channels[o.choices.IntN(len(channels))]
		if !o.ensure(ctx) {
			return
		}
		o.readMembers(channel)
	}
}

// draw draws the next round.
func (c *churner) draw() churnPlan {
	plan := churnPlan{
		channel: c.channels[c.choices.IntN(len(c.channels))],
		hold:    holdMin + randDuration(c.choices, holdSpread),
		read:    c.choices.IntN(2) == 0,
		end:     endKeep,
		rest:    restMin + randDuration(c.choices, restSpread),
	}
	// One draw picks the ending with or without silent clients, so the
	// rest of the choices is the same either way.
	switch x := c.choices.Float64(); {
	case x < 0.70:
		plan.end = endLeave
	case x < 0.80:
		plan.end = endDrop
	case x < 0.85 && *c.env.cfg.SilentClients:
		plan.end = endSilent
	case x < 0.85:
		plan.end = endDrop
	}
	return plan
}

// run churns until ctx ends.
func (c *churner) run(ctx context.Context) {
	for ctx.Err() == nil {
		plan := c.draw()
		if !c.ensure(ctx) {
			return
		}
		c.round(ctx, plan)
		if !c.sleep(ctx, plan.rest) {
			return
		}
	}
}

// round joins plan.channel as a new member, holds the membership, maybe
// reads the roster, and ends the membership as planned. It gives up the
// round at the first fail or info.
func (c *churner) round(ctx context.Context, plan churnPlan) {
	// A connection joins a channel as one member at most, so a membership
	// that was kept on this channel ends before the new member joins.
	if c.joined[plan.channel] && c.leave(plan.channel) != outcomeOk {
		return
	}

	c.joins++
	member := fmt.Sprintf("m%d.%d.%d", c.process, c.epoch, c.joins)
	if join(c.worker, plan.channel, member) != outcomeOk {
		return
	}
	c.joined[plan.channel] = true
	if !c.wait(ctx, plan.hold) {
		return
	}
	if plan.read && c.readMembers(plan.channel) == outcomeInfo {
		return
	}

	switch plan.end {
	case endLeave:
		c.leave(plan.channel)
	case endDrop:
		c.dropConn()
	case endSilent:
		// A silence that would outlast ctx becomes a drop. Its member could
		// still be listed after the heal, and the convergence checker
		// expects the truth within 2 x peer timeout of the heal, which may
		// be shorter than the node's pong timeout.
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < c.silenceTime() {
			c.dropConn()
			return
		}
		c.silentConn(ctx)
	}
}

// leave records a presence.leave of channel.
func (c *churner) leave(channel string) outcome {
	o := c.call(history.Op{F: history.FLeave, Channel: channel}, func(ctx context.Context, cl *client.Client, _ *history.Op) error {
		return cl.Leave(ctx, channel)
	})
	if o == outcomeOk {
		delete(c.joined, channel)
	}
	return o
}

// final reads the roster of every channel on every node, each node over a
// fresh connection with a process id after every worker's.
func (p *presencePart) final(ctx context.Context) error {
	nodes := p.env.cfg.Nodes
	errs := make([]error, len(nodes))
	spawn(len(nodes), func(i int) {
		r := p.env.newWorker(p.env.finalBase+i, "final", i)
		if err := r.connectHome(ctx); err != nil {
			errs[i] = err
			return
		}
		defer r.shutdown()

		for _, channel := range p.channels {
			if o := r.readMembers(channel); o != outcomeOk {
				errs[i] = fmt.Errorf("process %d: final read of %s on node %s failed: see its fail or info entry in the history", r.process, channel, nodes[i].ID)
				return
			}
		}
	})
	return errors.Join(errs...)
}
