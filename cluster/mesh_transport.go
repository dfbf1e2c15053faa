package cluster

import (
	"sync"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/mesh"
	"github.com/wscluster/wscluster/cluster/wire"
)

// meshTransport adapts a mesh.Transport to Transport.
type meshTransport struct {
	mesh *mesh.Transport
	raw  chan mesh.Event
	done chan struct{}
	once sync.Once
}

// NewMeshTransport returns the Transport of the mesh engine: direct TCP or
// TLS links between all nodes.
func NewMeshTransport(cfg mesh.Config) (Transport, *mesh.Transport, error) {
	t, err := mesh.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return &meshTransport{mesh: t, raw: make(chan mesh.Event, 1024), done: make(chan struct{})}, t, nil
}

// Start starts the mesh and forwards its events in order.
func (m *meshTransport) Start(events chan<- TransportEvent) error {
	if err := m.mesh.Start(m.raw); err != nil {
		return err
	}
	go m.forward(events)
	return nil
}

func (m *meshTransport) forward(events chan<- TransportEvent) {
	for {
		select {
		case <-m.done:
			return
		case ev := <-m.raw:
			out := TransportEvent{Peer: ev.Peer, Link: ev.Link, Incarnation: ev.Incarnation, Envelope: ev.Envelope}
			switch ev.Kind {
			case mesh.EventLinkUp:
				out.Kind = EventLinkUp
			case mesh.EventLinkDown:
				out.Kind = EventLinkDown
			case mesh.EventEnvelope:
				out.Kind = EventEnvelope
			default:
				continue
			}
			select {
			case events <- out:
			case <-m.done:
				return
			}
		}
	}
}

func (m *meshTransport) Send(peer string, env *wire.Envelope) bool { return m.mesh.Send(peer, env) }

func (m *meshTransport) Peers() []backplane.PeerStatus {
	peers := m.mesh.Peers()
	out := make([]backplane.PeerStatus, 0, len(peers))
	for _, p := range peers {
		// The cluster replaces Connected with the peer's liveness and
		// moves the link state to Linked.
		out = append(out, backplane.PeerStatus{ID: p.ID, Addr: p.Addr, Connected: p.Connected})
	}
	return out
}

func (m *meshTransport) KnownAddrCount() int { return m.mesh.KnownAddrCount() }

// Close stops forwarding, then closes the mesh. The mesh's own goroutines
// stop on Close even when the event channel is full.
func (m *meshTransport) Close() error {
	var err error
	m.once.Do(func() {
		close(m.done)
		err = m.mesh.Close()
	})
	return err
}
