package workloads

import (
	"context"
	"errors"
)

// mixed is every workload that New returns: the pub/sub part, the presence
// part or both, with distinct process ids. "pubsub" and "presence" leave
// the other part nil.
type mixed struct {
	*env
	pubsub   *pubsubPart
	presence *presencePart
}

// Setup connects every worker to its home node, subscribes the subscribers
// and joins the observers, both parts at once.
func (m *mixed) Setup(ctx context.Context) error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.leave()
	ctx, cancel := m.bound(ctx)
	defer cancel()

	var errPubSub, errPresence error
	m.both(
		func() { errPubSub = m.pubsub.setup(ctx) },
		func() { errPresence = m.presence.setup(ctx) },
	)
	return errors.Join(errPubSub, errPresence)
}

// Run publishes, churns and observes until ctx ends or the workload is
// closed, and returns once every worker has stopped.
func (m *mixed) Run(ctx context.Context) error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.leave()
	ctx, cancel := m.bound(ctx)
	defer cancel()

	m.both(
		func() { m.pubsub.run(ctx) },
		func() { m.presence.run(ctx) },
	)
	return nil
}

// Observe keeps the observers reading rosters until ctx ends. Publishers
// and churn workers are idle, and subscribers keep receiving from their
// own goroutines.
func (m *mixed) Observe(ctx context.Context) error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.leave()
	ctx, cancel := m.bound(ctx)
	defer cancel()

	if m.presence == nil {
		<-ctx.Done()
		return nil
	}
	m.presence.observeOnly(ctx)
	return nil
}

// Final reads every presence roster on every node. The pub/sub part has no
// state to read.
func (m *mixed) Final(ctx context.Context) error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.leave()
	ctx, cancel := m.bound(ctx)
	defer cancel()

	if m.presence == nil {
		return nil
	}
	return m.presence.final(ctx)
}

// both runs the functions of the parts that exist, at the same time, and
// waits for them.
func (m *mixed) both(pubsub, presence func()) {
	var fns []func()
	if m.pubsub != nil {
		fns = append(fns, pubsub)
	}
	if m.presence != nil {
		fns = append(fns, presence)
	}
	spawn(len(fns), func(i int) { fns[i]() })
}
