package local

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/wscluster/wscluster/internal/faultproxy"
	"github.com/wscluster/wscluster/topology"
)

// ErrUnknownLink is returned, wrapped, for a link between known endpoints
// that the engine does not have, such as two nodes of a Redis cluster,
// which talk only through Redis. Links lists the links that exist.
var ErrUnknownLink = errors.New("local topology: no such link")

// network is the set of fault proxies between the processes. Its maps are
// written once, by newNetwork, and read-only afterwards.
type network struct {
	// mesh has one proxy per ordered pair of nodes: mesh[[2]string{from,
	// to}] is the address that from dials to reach to's cluster listener.
	mesh map[[2]string]*faultproxy.Proxy
	// redis has the proxy each node dials to reach Redis, by node id.
	redis map[string]*faultproxy.Proxy
}

// newNetwork starts the proxies that engine needs. clusterAddrs are the
// nodes' cluster listeners in node order, and redisAddr is Redis's
// address.
func newNetwork(engine string, ids, clusterAddrs []string, redisAddr string) (*network, error) {
	n := &network{mesh: map[[2]string]*faultproxy.Proxy{}, redis: map[string]*faultproxy.Proxy{}}
	for i, from := range ids {
		if engine == "redis" {
			p, err := faultproxy.New("127.0.0.1:0", redisAddr)
			if err != nil {
				n.close()
				return nil, fmt.Errorf("start the proxy from %s to redis: %w", from, err)
			}
			n.redis[from] = p
		}
		if engine != "mesh" {
			continue
		}
		for j, to := range ids {
			if i == j {
				continue
			}
			p, err := faultproxy.New("127.0.0.1:0", clusterAddrs[j])
			if err != nil {
				n.close()
				return nil, fmt.Errorf("start the proxy from %s to %s: %w", from, to, err)
			}
			n.mesh[[2]string{from, to}] = p
		}
	}
	return n, nil
}

// peerAddrs returns the proxy addresses that node from dials, one per
// other node, in node order.
func (n *network) peerAddrs(from string, ids []string) []string {
	var addrs []string
	for _, to := range ids {
		if p := n.mesh[[2]string{from, to}]; p != nil {
			addrs = append(addrs, p.Addr())
		}
	}
	return addrs
}

// all returns every proxy with a name such as "n1->n2" or "n1->redis", in
// name order.
func (n *network) all() ([]string, map[string]*faultproxy.Proxy) {
	byName := make(map[string]*faultproxy.Proxy, len(n.mesh)+len(n.redis))
	for pair, p := range n.mesh {
		byName[pair[0]+"->"+pair[1]] = p
	}
	for from, p := range n.redis {
		byName[from+"->"+topology.Redis] = p
	}
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, byName
}

// proxies returns the proxies that carry links, both directions of each,
// or an error naming the first link that does not exist. Nothing is
// changed, so a bad link in a list leaves every link as it was.
func (n *network) proxies(links []topology.Link, ids []string) ([]*faultproxy.Proxy, error) {
	if len(links) == 0 {
		return nil, errors.New("no links given: pass at least one link from Links()")
	}
	var out []*faultproxy.Proxy
	for _, l := range links {
		ps, err := n.linkProxies(l, ids)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

// linkProxies returns the proxies of one link.
func (n *network) linkProxies(l topology.Link, ids []string) ([]*faultproxy.Proxy, error) {
	a, b := l[0], l[1]
	for _, end := range l {
		if end == topology.Redis && len(n.redis) > 0 {
			continue
		}
		if !slices.Contains(ids, end) {
			return nil, fmt.Errorf("link %s-%s: %w %q: want one of %s", a, b, topology.ErrUnknownNode, end, strings.Join(n.endpoints(ids), ", "))
		}
	}
	if a == b {
		return nil, fmt.Errorf("link %s-%s: %w: both ends are the same", a, b, ErrUnknownLink)
	}

	// A node-Redis link is one proxy, which carries both directions.
	if b == topology.Redis {
		a, b = b, a
	}
	if a == topology.Redis {
		return []*faultproxy.Proxy{n.redis[b]}, nil
	}
	ab, ba := n.mesh[[2]string{a, b}], n.mesh[[2]string{b, a}]
	if ab == nil || ba == nil {
		return nil, fmt.Errorf("link %s-%s: %w: the nodes are not linked directly with this engine; use a link from Links()", a, b, ErrUnknownLink)
	}
	return []*faultproxy.Proxy{ab, ba}, nil
}

// endpoints returns the valid ends of a link, for error messages.
func (n *network) endpoints(ids []string) []string {
	if len(n.redis) > 0 {
		return append(slices.Clone(ids), topology.Redis)
	}
	return ids
}

// heal removes every fault from every proxy and returns an error naming
// the proxies that still report one.
func (n *network) heal() error {
	names, byName := n.all()
	for _, name := range names {
		byName[name].Heal()
		byName[name].SetLatency(0, 0)
	}
	var faulty []string
	for _, name := range names {
		if s := byName[name].State(); s.Faulty() {
			faulty = append(faulty, fmt.Sprintf("%s %+v", name, s))
		}
	}
	if len(faulty) > 0 {
		return fmt.Errorf("faults left after healing: %s", strings.Join(faulty, "; "))
	}
	return nil
}

// close closes every proxy.
func (n *network) close() error {
	names, byName := n.all()
	var errs []error
	for _, name := range names {
		if err := byName[name].Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the proxy %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
