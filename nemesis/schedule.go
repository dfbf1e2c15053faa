package nemesis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// Defaults of Config.
const (
	DefaultInterval      = 5 * time.Second
	DefaultFaultDuration = 6 * time.Second
	DefaultMaxConcurrent = 1
)

// opTimeout bounds one Start or Stop call. Calls run to their end even after
// Run's context ends, so that a fault is never half injected without a
// record. The slowest call is a Restart, which waits for /healthz up to the
// topology's StartTimeout (30s by default).
const opTimeout = 2 * time.Minute

// stopRetryDelay is the wait between attempts to stop a fault whose Stop
// failed.
const stopRetryDelay = time.Second

// Config sets what the nemesis injects and how often.
type Config struct {
	// Faults are the fault types to draw from, as Parse returns them.
	Faults []Fault
	// Interval is the quiet gap before each round of faults. Each gap is
	// drawn from Interval ±25%. Default 5s.
	Interval time.Duration
	// FaultDuration is how long a fault lasts. Each fault's duration is
	// drawn from FaultDuration ±25%. Default 6s.
	FaultDuration time.Duration
	// MaxConcurrent is the largest number of faults a round holds at once.
	// Each round starts between 1 and MaxConcurrent faults of different
	// kinds. Default 1.
	MaxConcurrent int
}

func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.FaultDuration == 0 {
		c.FaultDuration = DefaultFaultDuration
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("nemesis: interval %v is negative: use a positive duration, or 0 for %v", c.Interval, DefaultInterval)
	case c.FaultDuration < 0:
		return fmt.Errorf("nemesis: fault duration %v is negative: use a positive duration, or 0 for %v", c.FaultDuration, DefaultFaultDuration)
	case c.MaxConcurrent < 0:
		return fmt.Errorf("nemesis: max concurrent faults %d is negative: use 1 or more, or 0 for %d", c.MaxConcurrent, DefaultMaxConcurrent)
	case slices.ContainsFunc(c.Faults, func(f Fault) bool { return f == nil }):
		return errors.New("nemesis: a fault in Config.Faults is nil: build the list with Parse")
	}
	return nil
}

// Nemesis injects faults on a schedule drawn from one rng and records them.
//
// The schedule runs in rounds: a quiet gap, then between 1 and MaxConcurrent
// faults, each held for its duration, then the next gap. Every draw (gap,
// number of faults, start offsets, durations, which fault, its targets)
// happens in a fixed order, and stops and starts are carried out in the
// order of their planned times even when a topology call runs late. So the
// same seed gives the same sequence of faults and targets, as long as no
// topology call fails.
//
// Two faults never hold the same target at once. Kill and pause pick only
// nodes that no other kill or pause holds, and redis-kill and redis-pause
// exclude each other. Partition, latency and reset exclude each other too,
// because ending a partition or a latency fault heals the whole network.
type Nemesis struct {
	cfg  Config
	topo topology.Topology
	rec  *history.Recorder
	rng  *rand.Rand
	log  *slog.Logger

	// opMu serializes every Start, Stop and HealNetwork call together with
	// its history entries, so HealAll never runs between an injection and
	// its record.
	opMu sync.Mutex

	mu     sync.Mutex
	active []*injection // in start order
	lastID int
	healed bool // set by HealAll; Run starts nothing afterwards
}

// injection is one fault that Start injected.
type injection struct {
	index int // in cfg.Faults
	fault Fault
	desc  history.Fault
	// due is when the fault ends, from the start of its round.
	due time.Duration
}

// slot is a fault planned in a round: it starts at offset from the round's
// start and lasts hold.
type slot struct {
	offset, hold time.Duration
}

// errStopped ends Run quietly: its context ended or HealAll began.
var errStopped = errors.New("nemesis: stopped")

// New returns a nemesis that injects cfg.Faults into t, records them in rec
// and draws every choice from rng. rng must not be used by anything else
// while Run runs. A nil log logs to slog.Default().
func New(cfg Config, t topology.Topology, rec *history.Recorder, rng *rand.Rand, log *slog.Logger) *Nemesis {
	if log == nil {
		log = slog.Default()
	}
	return &Nemesis{cfg: cfg.withDefaults(), topo: t, rec: rec, rng: rng, log: log}
}

// Run injects faults until ctx ends or HealAll begins, and returns nil
// then. Faults active at that moment stay active for HealAll to end. Run
// returns an error for an invalid Config, and for a fault that the topology
// cannot inject (topology.ErrUnsupported), so that a run never passes
// without the faults it asked for. A fault whose Start fails otherwise is
// recorded, logged and drawn again in a later round. Run must not be called
// twice at once.
func (n *Nemesis) Run(ctx context.Context) error {
	if err := n.cfg.validate(); err != nil {
		return err
	}
	if n.rng == nil {
		return errors.New("nemesis: rng is nil: pass the run's seeded *rand.Rand to New")
	}
	if len(n.cfg.Faults) == 0 {
		<-ctx.Done()
		return nil
	}
	for {
		err := n.round(ctx)
		if errors.Is(err, errStopped) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// round runs one quiet gap and the faults after it.
func (n *Nemesis) round(ctx context.Context) error {
	// Draw the whole round's timing first, so that no draw depends on how
	// long a topology call takes.
	gap, slots := n.planRound()
	if !sleep(ctx, gap) {
		return errStopped
	}
	clock := &roundClock{base: time.Now()}

	// Start each planned fault at its offset, first ending the faults due
	// by then, so starts and stops keep their planned order.
	var pending []*injection
	for _, s := range slots {
		if err := n.stopDue(ctx, clock, &pending, s.offset); err != nil {
			return err
		}
		if !clock.waitUntil(ctx, s.offset) {
			return errStopped
		}
		inj, err := n.inject(ctx)
		clock.done(s.offset)
		if err != nil {
			return err
		}
		if inj != nil {
			inj.due = s.offset + s.hold
			if _, ok := inj.fault.(instant); ok {
				inj.due = s.offset
			}
			pending = insertByDue(pending, inj)
		}
	}

	// End the rest before the next gap.
	return n.stopDue(ctx, clock, &pending, time.Duration(1<<63-1))
}

// roundClock maps the planned offsets of a round to wall time. When a
// topology call ends after its planned time, the clock shifts by the delay,
// so every planned span, such as a fault's hold, lasts at least its planned
// length after the call that began it.
type roundClock struct {
	base time.Time
}

// waitUntil waits until the planned offset and reports whether ctx is
// still live.
func (c *roundClock) waitUntil(ctx context.Context, offset time.Duration) bool {
	return sleepUntil(ctx, c.base.Add(offset))
}

// done records that the call planned at offset has ended.
func (c *roundClock) done(offset time.Duration) {
	if late := time.Since(c.base.Add(offset)); late > 0 {
		c.base = c.base.Add(late)
	}
}

// planRound draws the gap before a round and its slots, sorted by offset.
// The first slot starts at once and the others within the first half of
// the first slot's hold, so that they overlap it.
func (n *Nemesis) planRound() (time.Duration, []slot) {
	gap := jitter(n.rng, n.cfg.Interval)
	slots := make([]slot, 1+n.rng.IntN(n.cfg.MaxConcurrent))
	for i := range slots {
		slots[i].hold = jitter(n.rng, n.cfg.FaultDuration)
		if i > 0 {
			slots[i].offset = time.Duration(n.rng.Int64N(int64(slots[0].hold/2) + 1))
		}
	}
	slices.SortStableFunc(slots, func(a, b slot) int { return cmp.Compare(a.offset, b.offset) })
	return gap, slots
}

// jitter returns a duration drawn uniformly from d ±25%.
func jitter(rng *rand.Rand, d time.Duration) time.Duration {
	return d*3/4 + time.Duration(rng.Int64N(int64(d/2)+1))
}

func insertByDue(pending []*injection, inj *injection) []*injection {
	i := len(pending)
	for i > 0 && pending[i-1].due > inj.due {
		i--
	}
	return slices.Insert(pending, i, inj)
}

// stopDue ends, in order, the pending faults due at or before until.
func (n *Nemesis) stopDue(ctx context.Context, clock *roundClock, pending *[]*injection, until time.Duration) error {
	for len(*pending) > 0 && (*pending)[0].due <= until {
		inj := (*pending)[0]
		if !clock.waitUntil(ctx, inj.due) {
			return errStopped
		}
		err := n.stopWithRetry(ctx, inj)
		clock.done(inj.due)
		if err != nil {
			return err
		}
		*pending = (*pending)[1:]
	}
	return nil
}

// inject draws a fault that holds no busy target, starts it and records
// it. It returns nil and no error when no fault is eligible or the start
// failed in a way worth retrying later.
func (n *Nemesis) inject(ctx context.Context) (*injection, error) {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if n.isHealed() {
		return nil, errStopped
	}
	index, view, ok := n.draw()
	if !ok {
		n.log.Debug("nemesis: every fault's target is busy, skipping a slot")
		return nil, nil
	}
	fault := n.cfg.Faults[index]
	opCtx, cancel := opContext(ctx)
	defer cancel()

	// The start entry carries the time the injection began, so that the
	// fault's window covers the whole injection.
	began := n.rec.Now()
	desc, err := fault.Start(opCtx, view, n.rng)
	desc.Kind = fault.Kind()
	if errors.Is(err, topology.ErrUnsupported) {
		n.log.Error("nemesis: the topology cannot inject this fault", "kind", desc.Kind, "err", err)
		return nil, fmt.Errorf("nemesis: fault %s cannot run on this topology: %w", desc.Kind, err)
	}
	desc.ID = n.nextID()
	if err != nil {
		n.undoFailedStart(opCtx, fault, desc, began, err)
		return nil, nil
	}
	n.record(history.FFaultStart, desc, began, nil)
	inj := &injection{index: index, fault: fault, desc: desc}
	n.mu.Lock()
	n.active = append(n.active, inj)
	n.mu.Unlock()
	n.log.Info("nemesis: fault started", faultAttrs(desc)...)
	return inj, nil
}

// undoFailedStart records a start that failed as a fault window, with the
// error on both entries, and calls Stop once to undo any part of the fault
// that took effect. The window stays in the history because a half-done
// fault may still have disturbed the cluster.
func (n *Nemesis) undoFailedStart(ctx context.Context, fault Fault, desc history.Fault, began int64, startErr error) {
	n.log.Warn("nemesis: fault start failed, undoing it and drawing again later",
		append(faultAttrs(desc), "err", startErr)...)
	n.record(history.FFaultStart, desc, began, startErr)
	stopErr := fault.Stop(ctx, n.topo)
	if stopErr != nil {
		n.log.Warn("nemesis: undo after a failed start failed too",
			append(faultAttrs(desc), "err", stopErr)...)
	}
	n.record(history.FFaultStop, desc, 0, stopErr)
}

// draw picks, with rng, one fault that is not active and whose target is
// free, and the topology to pass to its Start. It draws nothing when no
// fault is eligible.
func (n *Nemesis) draw() (int, topology.Topology, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	busy := map[string]bool{}
	var busyNodes []string
	for _, inj := range n.active {
		busy[resourceOf(inj.fault.Kind())] = true
		if resourceOf(inj.fault.Kind()) == resourceNode {
			busyNodes = append(busyNodes, inj.desc.Nodes...)
		}
	}
	free := slices.DeleteFunc(slices.Clone(n.topo.Nodes()), func(node topology.Node) bool {
		return slices.Contains(busyNodes, node.ID)
	})

	var eligible []int
	for i, f := range n.cfg.Faults {
		res := resourceOf(f.Kind())
		switch {
		case slices.ContainsFunc(n.active, func(inj *injection) bool { return inj.index == i }):
		case res == resourceNode && len(free) == 0:
		case res != resourceNode && busy[res]:
		default:
			eligible = append(eligible, i)
		}
	}
	if len(eligible) == 0 {
		return 0, nil, false
	}
	index := eligible[n.rng.IntN(len(eligible))]
	if resourceOf(n.cfg.Faults[index].Kind()) == resourceNode {
		return index, freeNodes{Topology: n.topo, nodes: free}, true
	}
	return index, n.topo, true
}

// Resources that faults hold while active. Node faults hold their node
// only, so several can run on different nodes.
const (
	resourceNode    = "node"
	resourceNetwork = "network"
)

// resourceOf returns what a fault of kind holds while active. A kind this
// package does not know holds only itself.
func resourceOf(kind string) string {
	switch kind {
	case KindPartition, KindLatency, KindLoss, KindReset:
		return resourceNetwork
	case KindKill, KindPause:
		return resourceNode
	case KindRedisKill, KindRedisPause:
		return topology.Redis
	default:
		return kind
	}
}

// freeNodes is the topology passed to a node fault's Start. Its Nodes()
// lists only the nodes that no other node fault holds.
type freeNodes struct {
	topology.Topology
	nodes []topology.Node
}

func (f freeNodes) Nodes() []topology.Node { return slices.Clone(f.nodes) }

// instant is implemented by faults that act once and leave nothing to end,
// such as reset. The scheduler stops them right after they start.
type instant interface{ instant() }

// stopWithRetry ends a fault, retrying a failed Stop until it works or ctx
// ends. A fault HealAll already ended counts as stopped.
func (n *Nemesis) stopWithRetry(ctx context.Context, inj *injection) error {
	for attempt := 1; ; attempt++ {
		err := n.stop(ctx, inj)
		if err == nil {
			return nil
		}
		if errors.Is(err, topology.ErrUnsupported) {
			return err
		}
		if n.isHealed() {
			return errStopped
		}
		n.log.Error("nemesis: fault stop failed, retrying", append(faultAttrs(inj.desc), "attempt", attempt, "err", err)...)
		if !sleep(ctx, stopRetryDelay) {
			return errStopped
		}
	}
}

func (n *Nemesis) stop(ctx context.Context, inj *injection) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if !n.isActive(inj) {
		return nil
	}
	opCtx, cancel := opContext(ctx)
	defer cancel()
	return n.stopLocked(opCtx, inj)
}

// stopLocked calls the fault's Stop and, when it worked, records the stop
// and removes the fault from the active ones. The caller holds opMu.
func (n *Nemesis) stopLocked(ctx context.Context, inj *injection) error {
	if err := inj.fault.Stop(ctx, n.topo); err != nil {
		return fmt.Errorf("nemesis: stop fault %s (%s): %w", inj.desc.ID, inj.desc.Detail, err)
	}
	n.mu.Lock()
	n.active = slices.DeleteFunc(n.active, func(a *injection) bool { return a == inj })
	n.mu.Unlock()
	n.record(history.FFaultStop, inj.desc, 0, nil)
	n.log.Info("nemesis: fault stopped", faultAttrs(inj.desc)...)
	return nil
}

// HealAll ends every active fault, newest first, then heals the network,
// and records a stop entry for each fault it ended. Run starts no fault
// after HealAll begins. A fault whose Stop fails stays active, so a second
// HealAll tries it again. HealAll is safe to call with nothing active and
// returns every error it met.
func (n *Nemesis) HealAll(ctx context.Context) error {
	n.mu.Lock()
	n.healed = true
	n.mu.Unlock()
	n.opMu.Lock()
	defer n.opMu.Unlock()

	var errs []error
	for _, inj := range n.activeNewestFirst() {
		if err := n.stopLocked(ctx, inj); err != nil {
			n.log.Error("nemesis: heal could not stop a fault", append(faultAttrs(inj.desc), "err", err)...)
			errs = append(errs, err)
		}
	}
	if err := n.topo.HealNetwork(ctx); err != nil {
		n.log.Error("nemesis: heal network failed", "err", err)
		errs = append(errs, fmt.Errorf("nemesis: heal network: %w", err))
	}
	return errors.Join(errs...)
}

// Active returns the faults active now, in start order.
func (n *Nemesis) Active() []history.Fault {
	n.mu.Lock()
	defer n.mu.Unlock()
	faults := make([]history.Fault, len(n.active))
	for i, inj := range n.active {
		faults[i] = cloneFault(inj.desc)
	}
	return faults
}

func (n *Nemesis) activeNewestFirst() []*injection {
	n.mu.Lock()
	defer n.mu.Unlock()
	active := slices.Clone(n.active)
	slices.Reverse(active)
	return active
}

func (n *Nemesis) isActive(inj *injection) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Contains(n.active, inj)
}

func (n *Nemesis) isHealed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.healed
}

func (n *Nemesis) nextID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lastID++
	return fmt.Sprintf("f%d", n.lastID)
}

// record appends a nemesis entry. at is the entry's time, or 0 for now.
func (n *Nemesis) record(f string, desc history.Fault, at int64, err error) {
	fault := cloneFault(desc)
	op := history.Op{Type: history.Nemesis, F: f, Process: history.ProcessNemesis, Time: at, Fault: &fault}
	if err != nil {
		op.Error = err.Error()
	}
	n.rec.Record(op)
}

func cloneFault(f history.Fault) history.Fault {
	f.Nodes = slices.Clone(f.Nodes)
	f.Links = slices.Clone(f.Links)
	return f
}

func faultAttrs(f history.Fault) []any {
	return []any{"fault_id", f.ID, "kind", f.Kind, "detail", f.Detail, "nodes", f.Nodes, "mechanism", f.Mechanism}
}

// opContext returns the context of one topology call: not canceled with
// ctx, so the call finishes, but bounded by opTimeout.
func opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
}

// sleep waits for d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	return sleepUntil(ctx, time.Now().Add(d))
}

// sleepUntil waits until t, or returns at once when t has passed, and
// reports whether ctx is still live.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
