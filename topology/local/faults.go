package local

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/wscluster/wscluster/internal/faultproxy"
	"github.com/wscluster/wscluster/topology"
)

// process returns the process of a node id or topology.Redis.
func (t *Topology) process(name string) (*process, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return nil, errors.New("local topology: closed")
	case t.procs == nil:
		return nil, errors.New("local topology: not started; call Start first")
	}
	p := t.procs[name]
	if p == nil {
		valid := t.ids
		if t.procs[topology.Redis] != nil {
			valid = append(valid[:len(valid):len(valid)], topology.Redis)
		}
		return nil, fmt.Errorf("local topology: %w %q: want one of %s", topology.ErrUnknownNode, name, strings.Join(valid, ", "))
	}
	return p, nil
}

// network returns the proxies once Start has created them.
func (t *Topology) network() (*network, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return nil, errors.New("local topology: closed")
	case t.net == nil:
		return nil, errors.New("local topology: not started; call Start first")
	}
	return t.net, nil
}

// Kill sends SIGKILL to a node or Redis and waits until it ended. Killing
// a process that is not running is an error.
func (t *Topology) Kill(ctx context.Context, node string) (string, error) {
	p, err := t.process(node)
	if err != nil {
		return "", err
	}
	if err := p.kill(ctx); err != nil {
		return "", fmt.Errorf("local topology: %w", err)
	}
	return MechanismKill, nil
}

// Restart starts a node or Redis that is not running with its first
// command line and ports, and waits until it serves: /healthz for a node,
// PING for Redis. A restarted Redis is empty. Restarting a running process
// is an error.
func (t *Topology) Restart(ctx context.Context, node string) (string, error) {
	p, err := t.process(node)
	if err != nil {
		return "", err
	}

	// A Close during the wait cuts it short.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatch := context.AfterFunc(t.closing, cancel)
	defer stopWatch()

	if err := p.start(ctx, t.cfg.StartTimeout); err != nil {
		return "", fmt.Errorf("local topology: %w", err)
	}
	return MechanismRestart, nil
}

// Pause stops a running node or Redis with SIGSTOP. Its sockets stay open
// and the kernel keeps accepting connections on them, but the process
// handles no request until Resume.
func (t *Topology) Pause(_ context.Context, node string) (string, error) {
	p, err := t.process(node)
	if err != nil {
		return "", err
	}
	if err := p.pause(); err != nil {
		return "", fmt.Errorf("local topology: %w", err)
	}
	return MechanismPause, nil
}

// Resume continues a paused node or Redis with SIGCONT.
func (t *Topology) Resume(_ context.Context, node string) (string, error) {
	p, err := t.process(node)
	if err != nil {
		return "", err
	}
	if err := p.resume(); err != nil {
		return "", fmt.Errorf("local topology: %w", err)
	}
	return MechanismResume, nil
}

// Partition blackholes both directions of each link: the proxies hold
// every byte and every new connection until HealNetwork, like a network
// that drops packets silently, so neither end gets an error until its own
// timeouts fire.
func (t *Topology) Partition(_ context.Context, links []topology.Link) (string, error) {
	ps, err := t.linkProxies("partition", links)
	if err != nil {
		return "", err
	}
	for _, p := range ps {
		p.Blackhole()
	}
	t.log.Info("links partitioned", "links", formatLinks(links), "mechanism", MechanismProxy)
	return MechanismProxy, nil
}

// Degrade delays every chunk of bytes on the links by f.Latency plus a
// uniform random offset within ±f.Jitter, in each direction, so a round
// trip gains about twice the latency. Packet loss needs a real network, so
// f.Loss > 0 returns an error wrapping topology.ErrUnsupported.
func (t *Topology) Degrade(_ context.Context, links []topology.Link, f topology.LinkFault) (string, error) {
	if f.Latency < 0 || f.Jitter < 0 || f.Loss < 0 || f.Loss > 1 {
		return "", fmt.Errorf("local topology: degrade: invalid link fault %+v: want latency and jitter >= 0 and loss from 0 to 1", f)
	}
	if f.Loss > 0 {
		return "", fmt.Errorf("local topology: degrade with loss %g: %w: packet loss needs a real network: use the container topology", f.Loss, topology.ErrUnsupported)
	}
	ps, err := t.linkProxies("degrade", links)
	if err != nil {
		return "", err
	}
	for _, p := range ps {
		p.SetLatency(f.Latency, f.Jitter)
	}
	t.log.Info("links degraded", "links", formatLinks(links), "latency", f.Latency, "jitter", f.Jitter, "mechanism", MechanismProxy)
	return MechanismProxy, nil
}

// ResetConnections resets every connection open on the links once. New
// connections go through, unless the link is partitioned.
func (t *Topology) ResetConnections(_ context.Context, links []topology.Link) (string, error) {
	ps, err := t.linkProxies("reset connections", links)
	if err != nil {
		return "", err
	}
	for _, p := range ps {
		p.ResetAll()
	}
	t.log.Info("connections reset", "links", formatLinks(links), "mechanism", MechanismProxy)
	return MechanismProxy, nil
}

// HealNetwork ends every partition and removes every latency, then
// checks every proxy's state and returns an error naming any proxy that
// still has a fault. Before Start there is nothing to heal.
func (t *Topology) HealNetwork(_ context.Context) error {
	t.mu.Lock()
	closed, netw := t.closed, t.net
	t.mu.Unlock()
	switch {
	case closed:
		return errors.New("local topology: heal network: closed")
	case netw == nil:
		return nil
	}
	if err := netw.heal(); err != nil {
		return fmt.Errorf("local topology: heal network: %w", err)
	}
	t.log.Info("network healed")
	return nil
}

// linkProxies returns the proxies of links, for the fault named op.
func (t *Topology) linkProxies(op string, links []topology.Link) ([]*faultproxy.Proxy, error) {
	netw, err := t.network()
	if err != nil {
		return nil, err
	}
	ps, err := netw.proxies(links, t.ids)
	if err != nil {
		return nil, fmt.Errorf("local topology: %s: %w", op, err)
	}
	return ps, nil
}

// formatLinks returns links as "n1-n2,n1-n3" for logs.
func formatLinks(links []topology.Link) string {
	parts := make([]string, 0, len(links))
	for _, l := range links {
		parts = append(parts, l[0]+"-"+l[1])
	}
	return strings.Join(parts, ",")
}
