package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wscluster/wscluster/cluster/wire"
)

// Limits of the address book.
const (
	// maxKnownAddrs bounds the addresses learned from peers, so a peer
	// cannot make this node hold or dial an unbounded list.
	maxKnownAddrs = 1024
	// lookupTimeout bounds one DNS lookup.
	lookupTimeout = 5 * time.Second
	// rejectLogInterval is the time between two warnings of one reject
	// reason.
	rejectLogInterval = 10 * time.Second
)

// peerEntry is one parsed entry of Config.Peers.
type peerEntry struct {
	host string
	port string
	ip   net.IP // nil for a DNS name
}

// addrEntry is one known address of another node.
type addrEntry struct {
	addr string // normalized host:port, the book's key
	// serverName is the host a dialer verifies in the TLS certificate:
	// the name from Peers, not the address it resolved to.
	serverName string
	refs       int  // Peers entries that resolve to addr, configured if > 0
	learned    bool // from a peer's hello or peer list
	self       bool // a handshake showed this node is there
	node       string
	dialing    bool
	attempts   int // failed dials since the last link, for the backoff
	nextDial   time.Time
	downSince  time.Time // zero while linked to node
}

func (e *addrEntry) configured() bool { return e.refs > 0 }

// parsePeers validates the Peers entries.
func parsePeers(peers []string) ([]peerEntry, error) {
	entries := make([]peerEntry, 0, len(peers))
	for _, p := range peers {
		if !validAddr(p) {
			return nil, fmt.Errorf("%w: peer %q: want host:port with a port of 1-65535", ErrInvalidConfig, p)
		}
		host, port, _ := net.SplitHostPort(p)
		entries = append(entries, peerEntry{host: host, port: port, ip: net.ParseIP(host)})
	}
	return entries, nil
}

// validAddr reports whether addr is host:port with a non-empty host and a
// port of 1-65535.
func validAddr(addr string) bool {
	if len(addr) > maxAddrLen {
		return false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// normalizeAddr writes an IP address in its canonical form, so that
// "[0:0::1]:80" and "[::1]:80" are one address. Host names are kept.
func normalizeAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil {
		return net.JoinHostPort(ip.String(), port)
	}
	return addr
}

func (t *Transport) hasDNSPeers() bool {
	for _, e := range t.entries {
		if e.ip == nil {
			return true
		}
	}
	return false
}

// addLiteralPeersLocked adds the Peers entries that are IP addresses.
// resolveLoop adds the others.
func (t *Transport) addLiteralPeersLocked() {
	for _, e := range t.entries {
		if e.ip != nil {
			t.addConfiguredLocked(net.JoinHostPort(e.ip.String(), e.port), e.host)
		}
	}
}

// addConfiguredLocked adds one reference from Peers to addr. It returns
// true when addr is new to the book.
func (t *Transport) addConfiguredLocked(addr, serverName string) bool {
	e, added := t.entryLocked(addr)
	e.refs++
	e.serverName = serverName
	return added
}

// dropConfiguredLocked removes one reference from Peers to addr, and the
// address itself unless it was also learned. It returns true when addr
// left the book.
func (t *Transport) dropConfiguredLocked(addr string) bool {
	e := t.book[addr]
	if e == nil {
		return false
	}
	e.refs--
	if e.configured() || e.learned {
		return false
	}
	delete(t.book, addr)
	return true
}

// entryLocked returns the book's entry for addr, creating it if needed.
func (t *Transport) entryLocked(addr string) (*addrEntry, bool) {
	if e := t.book[addr]; e != nil {
		return e, false
	}
	host, _, _ := net.SplitHostPort(addr)
	e := &addrEntry{addr: addr, serverName: host, self: t.selfAddrs[addr], downSince: time.Now()}
	t.book[addr] = e
	if !e.self {
		signal(t.wakeDial)
		signal(t.bookChanged)
	}
	return e, true
}

// learn adds addresses from a peer's list. Invalid ones are skipped.
func (t *Transport) learn(addrs []string, log *slog.Logger) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range addrs {
		if !validAddr(a) {
			log.Debug("ignoring invalid address from peer list", "addr", a)
			continue
		}
		t.learnLocked(normalizeAddr(a), log)
	}
}

// learnLocked marks addr as learned, adding it within maxKnownAddrs.
func (t *Transport) learnLocked(addr string, log *slog.Logger) {
	if t.selfAddrs[addr] {
		return
	}
	if e := t.book[addr]; e != nil {
		e.learned = true
		return
	}
	if len(t.book) >= maxKnownAddrs {
		if ok, suppressed := t.rejects.allow("address_book_full", time.Now()); ok {
			log.Warn("ignoring learned address: address book full", "addr", addr, "max", maxKnownAddrs, "suppressed_since_last", suppressed)
		}
		return
	}
	e, _ := t.entryLocked(addr)
	e.learned = true
}

// linkedAddrsLocked notes that l's peer is reachable: its advertised
// address is learned, and the peer's addresses stop counting as down.
func (t *Transport) linkedAddrsLocked(l *link) {
	if adv := normalizeAddr(l.addr); !t.selfAddrs[adv] {
		t.learnLocked(adv, l.log)
		if e := t.book[adv]; e != nil {
			e.node = l.peer
		}
	}
	if e := t.book[l.dialed]; l.dialed != "" && e != nil {
		e.node = l.peer
	}
	for _, e := range t.book {
		if e.node == l.peer {
			e.attempts = 0
			e.downSince = time.Time{}
		}
	}
}

// unregister removes a link that ended. The peer's addresses become due
// for a redial after the first backoff step.
func (t *Transport) unregister(l *link) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.links[l.peer] == l {
		delete(t.links, l.peer)
	}
	if t.links[l.peer] != nil {
		return
	}
	now := time.Now()
	for _, e := range t.book {
		if e.node == l.peer {
			e.attempts = 0
			e.nextDial = now.Add(t.backoff(0))
			e.downSince = now
		}
	}
	signal(t.wakeDial)
}

// dropLastLink forgets l as the peer's latest link once its LinkDown is
// sent, unless a newer link took its place.
func (t *Transport) dropLastLink(l *link) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lastLink[l.peer] == l {
		delete(t.lastLink, l.peer)
	}
}

// forgetLocked removes learned addresses that have been unreachable for
// ForgetAfter. It returns true when the book changed.
func (t *Transport) forgetLocked(now time.Time) bool {
	changed := false
	for addr, e := range t.book {
		if !e.learned || e.configured() || e.self || e.downSince.IsZero() || e.dialing {
			continue
		}
		if now.Sub(e.downSince) < t.cfg.ForgetAfter {
			continue
		}
		delete(t.book, addr)
		changed = true
		t.log.Info("forgot unreachable learned address", "addr", addr, "node_id", e.node, "unreachable_for", now.Sub(e.downSince).Round(time.Millisecond))
	}

	// A node id is forgotten with its last address.
	if changed {
		for id := range t.advertised {
			if t.links[id] == nil && !t.hasNodeLocked(id) {
				delete(t.advertised, id)
			}
		}
	}
	return changed
}

func (t *Transport) hasNodeLocked(id string) bool {
	for _, e := range t.book {
		if e.node == id {
			return true
		}
	}
	return false
}

// resolveLoop resolves the DNS names of Peers at once and then every
// ResolveInterval, or every HeartbeatInterval while a lookup fails.
func (t *Transport) resolveLoop() {
	defer t.wg.Done()
	failures := make([]int, len(t.entries))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-timer.C:
		}
		interval := t.cfg.ResolveInterval
		if !t.resolveAll(failures) {
			interval = min(interval, t.cfg.HeartbeatInterval)
		}
		timer.Reset(interval)
	}
}

// resolveAll looks up every DNS name of Peers and updates the book. It
// returns false when a lookup failed, and the addresses of that name stay as
// they were. A name that does not exist has no addresses.
func (t *Transport) resolveAll(failures []int) bool {
	ok := true
	for i, entry := range t.entries {
		if entry.ip != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(t.ctx, lookupTimeout)
		hosts, err := t.cfg.LookupHost(ctx, entry.host)
		cancel()
		var dnsErr *net.DNSError
		if err != nil && !(errors.As(err, &dnsErr) && dnsErr.IsNotFound) {
			if t.ctx.Err() != nil {
				return true
			}
			ok = false
			failures[i]++
			if failures[i] == 1 {
				t.log.Warn("peer name lookup failed, retrying", "host", entry.host, "error", err)
			}
			continue
		}
		if failures[i] > 0 {
			t.log.Info("peer name lookup succeeded again", "host", entry.host, "failures", failures[i])
			failures[i] = 0
		}
		t.warnIfEmpty(i, entry, len(hosts) == 0)
		t.setResolved(i, entry, hosts)
	}
	return ok
}

// warnIfEmpty logs once each time a --peers name starts to resolve to no
// address. A typo in --peers would otherwise leave the node alone, and
// ready because it knows no peer, without a word.
func (t *Transport) warnIfEmpty(i int, entry peerEntry, empty bool) {
	t.mu.Lock()
	if t.emptyNames == nil {
		t.emptyNames = make(map[int]bool)
	}
	was := t.emptyNames[i]
	t.emptyNames[i] = empty
	t.mu.Unlock()
	if empty && !was {
		t.log.Warn("peer name has no address, so nothing is dialed for it; check the --peers entry", "host", entry.host, "port", entry.port)
	}
}

// setResolved replaces the addresses of Peers entry i with those of hosts.
// An address that left DNS is no longer dialed, but its link stays up.
func (t *Transport) setResolved(i int, entry peerEntry, hosts []string) {
	now := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			now[net.JoinHostPort(ip.String(), entry.port)] = true
		}
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.resolved[i]
	for addr := range now {
		if !old[addr] {
			t.addConfiguredLocked(addr, entry.host)
		}
	}
	for addr := range old {
		if !now[addr] && t.dropConfiguredLocked(addr) {
			signal(t.bookChanged)
			t.log.Info("peer address left DNS, no longer dialed", "host", entry.host, "addr", addr)
		}
	}
	t.resolved[i] = now
}

// peersEnvelope returns a peer list with this node's advertised address
// and every other known address.
func (t *Transport) peersEnvelope() *wire.Envelope {
	t.mu.RLock()
	addrs := make([]string, 0, len(t.book)+1)
	addrs = append(addrs, t.advertise)
	for addr, e := range t.book {
		if !e.self {
			addrs = append(addrs, addr)
		}
	}
	t.mu.RUnlock()
	slices.Sort(addrs[1:])
	return &wire.Envelope{Kind: wire.KindPeers, Origin: t.cfg.NodeID, Incarnation: t.cfg.Incarnation, Peers: addrs}
}

// exchangeLoop sends the peer list to every link whenever the set of known
// addresses changes. A link gets the list at its LinkUp as well.
func (t *Transport) exchangeLoop() {
	defer t.wg.Done()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-t.bookChanged:
		}
		env := t.peersEnvelope()
		t.mu.RLock()
		links := make([]*link, 0, len(t.links))
		for _, l := range t.links {
			if l.up.Load() {
				links = append(links, l)
			}
		}
		t.mu.RUnlock()
		for _, l := range links {
			l.enqueue(env)
		}
	}
}

// logLimiter lets one log line per key through per rejectLogInterval and
// counts the others.
type logLimiter struct {
	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

// allow reports whether a line for key may be logged at now, and how many
// were suppressed since the last one.
func (ll *logLimiter) allow(key string, now time.Time) (bool, int) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	if ll.suppressed == nil {
		ll.suppressed = make(map[string]int)
	}
	if last, ok := ll.last[key]; ok && now.Sub(last) < rejectLogInterval {
		ll.suppressed[key]++
		return false, 0
	}
	n := ll.suppressed[key]
	ll.last[key] = now
	ll.suppressed[key] = 0
	return true, n
}
