package container

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/wscluster/wscluster/topology"
)

// netState holds the network faults of the run and applies them through
// the sidecars. The fault maps are the truth: each sidecar gets the rules
// that its member's links need, again after a restart, and with the new
// address of a restarted peer.
//
// Lock order: netState.mu may be held while a member's mu is taken, never
// the other way round.
type netState struct {
	t       *Topology
	nw      *testcontainers.DockerNetwork
	members map[string]*member

	mu       sync.Mutex
	sidecars map[string]*sidecar
	ips      map[string]netip.Addr // last known address of each member
	down     map[string]bool       // killed members, whose namespace is gone
	cut      map[topology.Link]bool
	slow     map[topology.Link]topology.LinkFault
	applied  map[string]appliedRules
	// disconnected lists the members that the docker network disconnect
	// fallback keeps off the network.
	disconnected map[string]bool
	// nftMissing is the helper's message once nftables turned out
	// unsupported; from then on partitions use the fallback.
	nftMissing string
	// forceDisconnect makes partitions use the fallback, for tests on a
	// kernel with nftables.
	forceDisconnect bool
	// closed is set by close, after which no sidecar starts.
	closed bool
}

// appliedRules are the last helper commands run in a member's namespace,
// so that unchanged rules are not applied again.
type appliedRules struct {
	drop    string // the --drop list of the partition
	degrade string // the degrade arguments, "" for none
	// delayMechanism is the delay mechanism the helper reported for
	// degrade, "" without a delay.
	delayMechanism string
}

func newNetState(t *Topology, nw *testcontainers.DockerNetwork, members map[string]*member) *netState {
	return &netState{
		t:            t,
		nw:           nw,
		members:      members,
		sidecars:     map[string]*sidecar{},
		ips:          map[string]netip.Addr{},
		down:         map[string]bool{},
		cut:          map[topology.Link]bool{},
		slow:         map[topology.Link]topology.LinkFault{},
		applied:      map[string]appliedRules{},
		disconnected: map[string]bool{},
	}
}

// attach gives a member that just started a new sidecar, learns its
// address and applies its rules. A new address also changes the rules of
// the member's peers.
func (ns *netState) attach(ctx context.Context, name string) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.closed {
		return fmt.Errorf("start the sidecar of %s: the topology is closed", name)
	}
	m := ns.members[name]
	if old := ns.sidecars[name]; old != nil {
		delete(ns.sidecars, name)
		if err := ns.t.docker.removeContainer(ctx, old.ctr.GetContainerID()); err != nil {
			return fmt.Errorf("remove the old sidecar of %s: %w", name, err)
		}
	}

	// A restart connects a member that the fallback keeps off the network,
	// so that it can come up; it goes off again here.
	if ns.disconnected[name] {
		if err := ns.disconnect(ctx, name); err != nil {
			return err
		}
	}
	sc, err := ns.t.startSidecar(ctx, name, m.containerID())
	if err != nil {
		return err
	}
	ns.sidecars[name] = sc
	ns.down[name] = false
	ns.applied[name] = appliedRules{}

	changed := false
	if !ns.disconnected[name] {
		ip, err := m.ip(ctx, ns.nw.Name)
		if err != nil {
			return err
		}
		changed = ns.ips[name] != ip
		ns.ips[name] = ip
	}
	names := []string{name}
	if changed {
		names = ns.endpoints(ns.linksOf(name))
	}
	return ns.applyAll(ctx, names)
}

// detach removes the sidecar of a member that was killed. Its rules stay in
// the fault maps and are applied again by attach.
func (ns *netState) detach(ctx context.Context, name string) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.down[name] = true
	ns.applied[name] = appliedRules{}
	sc := ns.sidecars[name]
	if sc == nil {
		return nil
	}
	delete(ns.sidecars, name)
	return ns.t.docker.removeContainer(ctx, sc.ctr.GetContainerID())
}

// beforeRestart connects a member that the fallback keeps off the network,
// because its wait strategy reaches it through a published port, which
// only a connected container has.
func (ns *netState) beforeRestart(ctx context.Context, name string) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if !ns.disconnected[name] {
		return nil
	}
	return ns.connect(ctx, name)
}

// linksOf returns the links with a fault that have name at one end.
func (ns *netState) linksOf(name string) []topology.Link {
	var links []topology.Link
	for l := range ns.cut {
		if l[0] == name || l[1] == name {
			links = append(links, l)
		}
	}
	for l := range ns.slow {
		if l[0] == name || l[1] == name {
			links = append(links, l)
		}
	}
	return links
}

// endpoints returns the ends of links, sorted, without repeats.
func (ns *netState) endpoints(links []topology.Link) []string {
	var names []string
	for _, l := range links {
		names = append(names, l[0], l[1])
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// applyAll applies the rules of each member in names and returns every
// error.
func (ns *netState) applyAll(ctx context.Context, names []string) error {
	var errs []error
	for _, name := range names {
		errs = append(errs, ns.apply(ctx, name))
	}
	return errors.Join(errs...)
}

// apply runs the helper commands that bring a member's namespace to the
// rules its links need. A member without a namespace is skipped.
func (ns *netState) apply(ctx context.Context, name string) error {
	sc := ns.sidecars[name]
	if ns.down[name] || sc == nil {
		return nil
	}
	a := ns.applied[name]
	if drop := ns.dropList(name); drop != a.drop {
		if _, err := sc.run(ctx, "partition", "--drop", drop); err != nil {
			return err
		}
		a.drop = drop
		ns.applied[name] = a
	}
	args, err := ns.degradeArgs(name)
	if err != nil {
		return err
	}
	if key := strings.Join(args, " "); key != a.degrade {
		if len(args) == 0 {
			args = []string{"--delay", "0s", "--loss", "0"}
		}
		mechanism, err := sc.degrade(ctx, args)
		if err != nil {
			return err
		}
		a.degrade, a.delayMechanism = key, mechanism
		ns.applied[name] = a
	}
	return nil
}

// dropList returns the addresses that a member's partition rules drop,
// sorted and comma-separated. Partitions of the fallback are not rules.
func (ns *netState) dropList(name string) string {
	if ns.nftMissing != "" || ns.forceDisconnect {
		return ""
	}
	var addrs []string
	for l := range ns.cut {
		if peer, ok := otherEnd(l, name); ok && ns.ips[peer].IsValid() {
			addrs = append(addrs, ns.ips[peer].String())
		}
	}
	slices.Sort(addrs)
	return strings.Join(slices.Compact(addrs), ",")
}

// degradeArgs returns the degrade flags for a member's slowed links, or
// nil when none is slowed. One namespace takes one degradation, so links
// of a member with different faults return an error wrapping
// topology.ErrUnsupported.
func (ns *netState) degradeArgs(name string) ([]string, error) {
	var peers []string
	var fault topology.LinkFault
	var first topology.Link
	found := false
	for _, l := range slices.SortedFunc(maps.Keys(ns.slow), compareLinks) {
		peer, ok := otherEnd(l, name)
		if !ok {
			continue
		}
		f := ns.slow[l]
		if found && f != fault {
			return nil, fmt.Errorf("degrade %s: %w: the links %s and %s of %s have different faults (%+v and %+v), but one network namespace takes one degradation; heal the network first",
				name, topology.ErrUnsupported, formatLink(first), formatLink(l), name, fault, f)
		}
		if !found {
			fault, first, found = f, l, true
		}
		if ip := ns.ips[peer]; ip.IsValid() {
			peers = append(peers, ip.String())
		}
	}
	if len(peers) == 0 {
		return nil, nil
	}
	slices.Sort(peers)
	return []string{
		"--delay", fault.Latency.String(),
		"--jitter", fault.Jitter.String(),
		"--loss", fmt.Sprint(fault.Loss),
		"--peers", strings.Join(slices.Compact(peers), ","),
	}, nil
}

// otherEnd returns the end of l that is not name, if name is an end.
func otherEnd(l topology.Link, name string) (string, bool) {
	switch name {
	case l[0]:
		return l[1], true
	case l[1]:
		return l[0], true
	}
	return "", false
}

// partition cuts links with nftables rules, or with the fallback once the
// helper reported nftables unsupported. On an error no link is cut.
func (ns *netState) partition(ctx context.Context, links []topology.Link) (string, error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.nftMissing != "" || ns.forceDisconnect {
		return ns.disconnectPartition(ctx, links)
	}
	prev := maps.Clone(ns.cut)
	for _, l := range links {
		ns.cut[l] = true
	}
	names := ns.endpoints(links)
	err := ns.applyAll(ctx, names)
	if err == nil {
		return MechanismNFTables, nil
	}

	// Every namespace goes back to the rules it had.
	ns.cut = prev
	restoreErr := ns.applyAll(ctx, names)
	if errors.Is(err, errHelperUnsupported) && restoreErr == nil {
		ns.nftMissing = err.Error()
		ns.t.log.Warn("nftables is not available; partitions fall back to docker network disconnect", "error", err)
		return ns.disconnectPartition(ctx, links)
	}
	return "", errors.Join(err, restoreErr)
}

// disconnectPartition cuts links by taking whole members off the network
// with docker network disconnect. That works only when every cut link has
// an end whose links are all cut; otherwise it returns an error wrapping
// topology.ErrUnsupported.
func (ns *netState) disconnectPartition(ctx context.Context, links []topology.Link) (string, error) {
	cut := maps.Clone(ns.cut)
	for _, l := range links {
		cut[l] = true
	}
	chosen, err := ns.isolate(cut)
	if err != nil {
		return "", err
	}
	for _, name := range chosen {
		if ns.disconnected[name] {
			continue
		}
		if err := ns.disconnect(ctx, name); err != nil {
			return "", err
		}
		ns.disconnected[name] = true
	}
	ns.cut = cut
	return MechanismDisconnect, nil
}

// isolate returns the members to take off the network so that every link
// in cut is cut. Only a member whose links are all in cut can go. Members
// already off the network count first, then those with the most links. Each
// is chosen only if it cuts a link that no earlier one cut.
func (ns *netState) isolate(cut map[topology.Link]bool) ([]string, error) {
	degree, isolated := ns.isolatedEnds(cut)
	covered := map[topology.Link]bool{}
	cover := func(name string) bool {
		gain := false
		for l := range cut {
			if _, ok := otherEnd(l, name); ok && !covered[l] {
				covered[l], gain = true, true
			}
		}
		return gain
	}
	for name := range ns.disconnected {
		cover(name)
	}

	candidates := slices.Collect(maps.Keys(isolated))
	slices.SortFunc(candidates, func(a, b string) int {
		if degree[a] != degree[b] {
			return degree[b] - degree[a]
		}
		return strings.Compare(a, b)
	})
	var chosen []string
	for _, name := range candidates {
		if cover(name) {
			chosen = append(chosen, name)
		}
	}
	for _, l := range slices.SortedFunc(maps.Keys(cut), compareLinks) {
		if !covered[l] {
			return nil, fmt.Errorf("partition %s: %w: nftables cannot run here (%s), and the fallback, docker network disconnect, cuts only links of a container whose links are all cut, which neither end of %s is",
				formatLink(l), topology.ErrUnsupported, ns.nftReason(), formatLink(l))
		}
	}
	return chosen, nil
}

// isolatedEnds returns the number of links of each member, and the
// members whose links are all in cut.
func (ns *netState) isolatedEnds(cut map[topology.Link]bool) (map[string]int, map[string]bool) {
	degree := map[string]int{}
	open := map[string]bool{}
	for _, l := range ns.t.Links() {
		for _, end := range l {
			degree[end]++
			if !cut[l] {
				open[end] = true
			}
		}
	}
	isolated := map[string]bool{}
	for end := range degree {
		if !open[end] {
			isolated[end] = true
		}
	}
	return degree, isolated
}

func (ns *netState) nftReason() string {
	if ns.nftMissing != "" {
		return ns.nftMissing
	}
	return "the fallback is forced"
}

// disconnect takes a member's container off the run's network.
func (ns *netState) disconnect(ctx context.Context, name string) error {
	id := ns.members[name].containerID()
	_, err := ns.t.docker.NetworkDisconnect(ctx, ns.nw.ID, client.NetworkDisconnectOptions{Container: id, Force: true})
	if err != nil && !strings.Contains(err.Error(), "is not connected") {
		return fmt.Errorf("disconnect %s from the network %s: %w", name, ns.nw.Name, err)
	}
	ns.t.log.Info("container disconnected from the network", "node", name, "mechanism", MechanismDisconnect)
	return nil
}

// connect puts a member's container back on the run's network under its
// name.
func (ns *netState) connect(ctx context.Context, name string) error {
	id := ns.members[name].containerID()
	_, err := ns.t.docker.NetworkConnect(ctx, ns.nw.ID, client.NetworkConnectOptions{
		Container:      id,
		EndpointConfig: &network.EndpointSettings{Aliases: []string{name}},
	})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("connect %s to the network %s: %w", name, ns.nw.Name, err)
	}
	return nil
}

// degrade replaces the fault of links with f; a zero f removes it. It
// returns the mechanism of the delay, or MechanismNFTables without one. On
// an error every namespace keeps the rules it had.
func (ns *netState) degrade(ctx context.Context, links []topology.Link, f topology.LinkFault) (string, error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	prev := maps.Clone(ns.slow)
	for _, l := range links {
		if f == (topology.LinkFault{}) {
			delete(ns.slow, l)
		} else {
			ns.slow[l] = f
		}
	}
	names := ns.endpoints(links)
	err := ns.applyAll(ctx, names)
	if err != nil {
		ns.slow = prev
		return "", errors.Join(err, ns.applyAll(ctx, names))
	}
	if f.Latency > 0 {
		for _, name := range names {
			if m := ns.applied[name].delayMechanism; m != "" {
				return m, nil
			}
		}
	}
	return MechanismNFTables, nil
}

// reset makes every open TCP connection on links fail once. It runs the
// helper in one end's namespace per link, because the RST that the kernel
// sends there fails the other end too, and a second run at the other end
// could hit the connection already made again. It returns the helper's
// mechanism and the number of connections, or MechanismNone when no link
// has both ends on the network, so no connection can be open.
func (ns *netState) reset(ctx context.Context, links []topology.Link, hold time.Duration) (string, int, error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	peers := map[string][]string{}
	for _, l := range links {
		if end, peer, ok := ns.resetEnd(l); ok {
			peers[end] = append(peers[end], ns.ips[peer].String())
		}
	}
	mechanism, connections := MechanismNone, 0
	for _, end := range slices.Sorted(maps.Keys(peers)) {
		result, err := ns.sidecars[end].reset(ctx, peers[end], hold)
		if err != nil {
			return "", connections, err
		}
		mechanism = result.Mechanism
		connections += result.Connections
	}
	return mechanism, connections, nil
}

// resetEnd returns the end of l whose namespace resets the link, and the
// other end. Both ends must be up and on the network, with a sidecar at
// the chosen one.
func (ns *netState) resetEnd(l topology.Link) (end, peer string, ok bool) {
	for _, e := range l {
		if ns.down[e] || ns.disconnected[e] || !ns.ips[e].IsValid() {
			return "", "", false
		}
	}
	for _, end := range []string{l[0], l[1]} {
		if ns.sidecars[end] != nil {
			peer, _ := otherEnd(l, end)
			return end, peer, true
		}
	}
	return "", "", false
}

// heal removes every rule and qdisc in every namespace, connects the
// members that the fallback took off the network, and then checks with the
// helper's status that nothing is left.
func (ns *netState) heal(ctx context.Context) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.cut = map[topology.Link]bool{}
	ns.slow = map[topology.Link]topology.LinkFault{}
	names := slices.Sorted(maps.Keys(ns.sidecars))
	var errs []error
	for _, name := range names {
		ns.applied[name] = appliedRules{}
		if _, err := ns.sidecars[name].run(ctx, "heal"); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, ns.reconnectAll(ctx))
	for _, name := range names {
		errs = append(errs, ns.verifyHealed(ctx, name))
	}
	return errors.Join(errs...)
}

// reconnectAll connects every member that the fallback took off the
// network and learns its new address.
func (ns *netState) reconnectAll(ctx context.Context) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(ns.disconnected)) {
		if err := ns.connect(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(ns.disconnected, name)
		ns.t.log.Info("container connected to the network again", "node", name)
		if ns.down[name] {
			continue
		}
		ip, err := ns.members[name].ip(ctx, ns.nw.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ns.ips[name] = ip
	}
	return errors.Join(errs...)
}

// verifyHealed returns an error when the helper's status shows a rule or a
// delay qdisc in a member's namespace.
func (ns *netState) verifyHealed(ctx context.Context, name string) error {
	st, err := ns.sidecars[name].status(ctx)
	if err != nil {
		return err
	}
	if st.NFTRules != 0 || st.HasDelay() {
		return fmt.Errorf("faults left in the namespace of %s after healing: %d nftables rules, qdiscs %+v", name, st.NFTRules, st.Qdiscs)
	}
	return nil
}

// close removes every sidecar.
func (ns *netState) close(ctx context.Context) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.closed = true
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(ns.sidecars)) {
		errs = append(errs, ns.t.docker.removeContainer(ctx, ns.sidecars[name].ctr.GetContainerID()))
		delete(ns.sidecars, name)
	}
	return errors.Join(errs...)
}

func compareLinks(a, b topology.Link) int {
	if c := strings.Compare(a[0], b[0]); c != 0 {
		return c
	}
	return strings.Compare(a[1], b[1])
}

func formatLink(l topology.Link) string { return l[0] + "-" + l[1] }
