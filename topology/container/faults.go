package container

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wscluster/wscluster/netfault"
	"github.com/wscluster/wscluster/topology"
)

// ErrUnknownLink is returned, wrapped, for a link between known endpoints
// that the engine does not have, such as two nodes of a Redis cluster,
// which talk only through Redis. Links lists the links that exist.
var ErrUnknownLink = errors.New("container topology: no such link")

// Mechanisms of the network faults that the helper chooses, besides
// MechanismNFTables, MechanismNetem and MechanismDisconnect.
const (
	// MechanismNFQueue delays packets in the sidecar's serve process,
	// which reads them from an NFQUEUE, on kernels without netem.
	MechanismNFQueue = netfault.DelayNFQueue
	// MechanismSockDestroy aborts TCP sockets with SOCK_DESTROY of
	// sock_diag; the kernel sends a RST to the other end.
	MechanismSockDestroy = netfault.ResetSockDestroy
	// MechanismNFTablesReset rejects the other end's TCP packets with a
	// RST for a moment, on kernels without CONFIG_INET_DIAG_DESTROY.
	MechanismNFTablesReset = netfault.ResetNFTables
	// MechanismNone is returned by ResetConnections when no given link
	// has both ends up and on the network, so no connection was open.
	MechanismNone = "none"
)

// maxResetHold bounds how long the nftables-reset fallback rejects
// packets, as the helper does.
const maxResetHold = 10 * time.Second

// member returns the member of a node id or topology.Redis, and the
// network state.
func (t *Topology) member(name string) (*member, *netState, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return nil, nil, errors.New("container topology: closed")
	case t.members == nil || t.net == nil:
		return nil, nil, errors.New("container topology: not started; call Start first")
	}
	m := t.members[name]
	if m == nil {
		return nil, nil, fmt.Errorf("container topology: %w %q: want one of %s", topology.ErrUnknownNode, name, strings.Join(t.endpoints(), ", "))
	}
	return m, t.net, nil
}

// network returns the network state once Start has created it.
func (t *Topology) network() (*netState, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return nil, errors.New("container topology: closed")
	case t.net == nil:
		return nil, errors.New("container topology: not started; call Start first")
	}
	return t.net, nil
}

// endpoints returns the valid ends of a link and fault targets.
func (t *Topology) endpoints() []string {
	if t.cfg.Engine == "redis" {
		return append(slices.Clone(t.ids), topology.Redis)
	}
	return t.ids
}

// Kill sends SIGKILL to a node's or Redis's container with docker kill,
// waits until it stopped, and removes its sidecar. Killing a container
// that is not running is an error.
func (t *Topology) Kill(ctx context.Context, node string) (string, error) {
	m, ns, err := t.member(node)
	if err != nil {
		return "", err
	}
	if err := m.kill(ctx); err != nil {
		return "", fmt.Errorf("container topology: %w", err)
	}
	if err := ns.detach(ctx, node); err != nil {
		return "", fmt.Errorf("container topology: kill %s: %w", node, err)
	}
	return MechanismKill, nil
}

// Restart starts a killed container again, with the same name, flags and
// published port, and waits until it serves: /healthz for a node, PING for
// Redis. Docker gives it a new network namespace, so it gets a new sidecar
// with the rules of its links. Its address may change, so peers find it by
// name. A restarted Redis is empty. Restarting a running container is an
// error.
func (t *Topology) Restart(ctx context.Context, node string) (string, error) {
	m, ns, err := t.member(node)
	if err != nil {
		return "", err
	}

	// A Close during the wait cuts it short.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatch := context.AfterFunc(t.closing, cancel)
	defer stopWatch()

	if m.running() {
		return "", fmt.Errorf("container topology: start %s: it is %s; Kill it first", node, m.stateString())
	}
	if err := ns.beforeRestart(ctx, node); err != nil {
		return "", fmt.Errorf("container topology: restart %s: %w", node, err)
	}
	if err := m.start(ctx); err != nil {
		return "", fmt.Errorf("container topology: %w", err)
	}
	if err := ns.attach(ctx, node); err != nil {
		return "", fmt.Errorf("container topology: restart %s: %w", node, err)
	}
	return MechanismRestart, nil
}

// Pause freezes a running container with docker pause. Its sockets stay
// open and the kernel keeps accepting connections, but no process in it
// runs until Resume.
func (t *Topology) Pause(ctx context.Context, node string) (string, error) {
	m, _, err := t.member(node)
	if err != nil {
		return "", err
	}
	if err := m.pause(ctx); err != nil {
		return "", fmt.Errorf("container topology: %w", err)
	}
	return MechanismPause, nil
}

// Resume thaws a paused container with docker unpause.
func (t *Topology) Resume(ctx context.Context, node string) (string, error) {
	m, _, err := t.member(node)
	if err != nil {
		return "", err
	}
	if err := m.resume(ctx); err != nil {
		return "", fmt.Errorf("container topology: %w", err)
	}
	return MechanismResume, nil
}

// Partition drops every packet between the ends of each link, in both
// directions, with nftables rules in both ends' namespaces, so neither end
// gets an error until its own timeouts fire.
//
// Where the helper reports nftables unsupported, a link set in which every
// link has an end with all its links cut is cut with docker network
// disconnect instead. That also takes the container's published port away,
// so clients cannot reach it either. Other link sets then return an error
// wrapping topology.ErrUnsupported.
func (t *Topology) Partition(ctx context.Context, links []topology.Link) (string, error) {
	ns, links, err := t.checkLinks("partition", links)
	if err != nil {
		return "", err
	}
	mechanism, err := ns.partition(ctx, links)
	if err != nil {
		return "", fmt.Errorf("container topology: partition %s: %w", formatLinks(links), err)
	}
	t.log.Info("links partitioned", "links", formatLinks(links), "mechanism", mechanism)
	return mechanism, nil
}

// Degrade delays the packets that each end of a link sends to the other by
// f.Latency ± f.Jitter, so a round trip gains about twice the latency.
// Each end also drops the fraction f.Loss of the packets it receives from
// the other, with nftables. The delay uses netem, or, on a kernel without
// netem or prio (which limits the delay to some peers), the sidecar's
// NFQUEUE reader, which keeps the packet order. The mechanism returned is
// MechanismNetem or MechanismNFQueue for a latency, and MechanismNFTables
// for loss alone. Where neither delay works, a latency returns an error
// wrapping topology.ErrUnsupported that names what the kernel lacks.
func (t *Topology) Degrade(ctx context.Context, links []topology.Link, f topology.LinkFault) (string, error) {
	if f.Latency < 0 || f.Jitter < 0 || f.Loss < 0 || f.Loss > 1 || (f.Jitter > 0 && f.Latency == 0) {
		return "", fmt.Errorf("container topology: degrade: invalid link fault %+v: want latency and jitter >= 0, jitter only with a latency, and loss from 0 to 1", f)
	}
	ns, links, err := t.checkLinks("degrade", links)
	if err != nil {
		return "", err
	}
	mechanism, err := ns.degrade(ctx, links, f)
	if err != nil {
		return "", fmt.Errorf("container topology: degrade %s with %+v: %w", formatLinks(links), f, err)
	}
	t.log.Info("links degraded", "links", formatLinks(links), "latency", f.Latency, "jitter", f.Jitter, "loss", f.Loss, "mechanism", mechanism)
	return mechanism, nil
}

// ResetConnections makes every open TCP connection on the links fail
// once, in the namespace of one end of each link: with MechanismSockDestroy
// at once, or with MechanismNFTablesReset during twice the heartbeat
// interval (at least 300 ms, at most 10 s). New connections go through
// afterwards. Links with an end that is killed or off the network have no
// open connection and are skipped.
func (t *Topology) ResetConnections(ctx context.Context, links []topology.Link) (string, error) {
	ns, links, err := t.checkLinks("reset connections", links)
	if err != nil {
		return "", err
	}
	hold := min(max(netfault.DefaultResetHold, 2*t.cfg.HeartbeatInterval), maxResetHold)
	mechanism, connections, err := ns.reset(ctx, links, hold)
	if err != nil {
		return "", fmt.Errorf("container topology: reset connections on %s: %w", formatLinks(links), err)
	}
	t.log.Info("connections reset", "links", formatLinks(links), "connections", connections, "mechanism", mechanism)
	return mechanism, nil
}

// HealNetwork removes every partition and link fault: it heals each
// sidecar's namespace and connects the containers the fallback
// disconnected. It then checks with the helper's status that no rule and
// no delay qdisc is left, and returns an error naming any. Before Start
// there is nothing to heal.
func (t *Topology) HealNetwork(ctx context.Context) error {
	t.mu.Lock()
	closed, ns := t.closed, t.net
	t.mu.Unlock()
	switch {
	case closed:
		return errors.New("container topology: heal network: closed")
	case ns == nil:
		return nil
	}
	if err := ns.heal(ctx); err != nil {
		return fmt.Errorf("container topology: heal network: %w", err)
	}
	t.log.Info("network healed")
	return nil
}

// checkLinks returns the network state and links in the order of Links(),
// or an error naming the first link that does not exist.
func (t *Topology) checkLinks(op string, links []topology.Link) (*netState, []topology.Link, error) {
	ns, err := t.network()
	if err != nil {
		return nil, nil, err
	}
	if len(links) == 0 {
		return nil, nil, fmt.Errorf("container topology: %s: no links given: pass at least one link from Links()", op)
	}
	valid := t.Links()
	out := make([]topology.Link, 0, len(links))
	for _, l := range links {
		for _, end := range l {
			if !slices.Contains(t.endpoints(), end) {
				return nil, nil, fmt.Errorf("container topology: %s: link %s: %w %q: want one of %s",
					op, formatLink(l), topology.ErrUnknownNode, end, strings.Join(t.endpoints(), ", "))
			}
		}
		switch {
		case slices.Contains(valid, l):
			out = append(out, l)
		case slices.Contains(valid, topology.Link{l[1], l[0]}):
			out = append(out, topology.Link{l[1], l[0]})
		default:
			return nil, nil, fmt.Errorf("container topology: %s: link %s: %w: the ends are not linked directly with engine %s; use a link from Links()",
				op, formatLink(l), ErrUnknownLink, t.cfg.Engine)
		}
	}
	return ns, out, nil
}

// formatLinks returns links as "n1-n2,n1-n3" for logs and errors.
func formatLinks(links []topology.Link) string {
	parts := make([]string, 0, len(links))
	for _, l := range links {
		parts = append(parts, formatLink(l))
	}
	return strings.Join(parts, ",")
}
