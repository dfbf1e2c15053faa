// Package container runs a wscluster cluster in Docker containers, one per
// node and one for Redis, on a private bridge network of their own, and
// implements topology.Topology with testcontainers-go.
//
// Every node runs the node image (scripts/build-images.sh builds it) with
// the hostname and network alias n1..nN, so that peers and Redis are found by
// name. Each node's port 8080 is published on 127.0.0.1 only, at a free port
// picked by New that stays the same across restarts. Nodes are killed with
// docker kill (SIGKILL) and paused with docker pause (the cgroup freezer).
//
// Network faults are applied by a sidecar container per node and for Redis.
// A sidecar runs wscluster-netfault from the node image in the network namespace
// of its container, with CAP_NET_ADMIN. Partitions and packet loss are
// nftables rules. Latency uses netem, or on a kernel without it an NFQUEUE
// reader in the sidecar that holds packets for the delay. Connection resets
// destroy the sockets (SOCK_DESTROY) or, failing that, reject packets with TCP
// resets for a moment. On a kernel without nftables, a partition that
// isolates whole containers falls back to docker network disconnect. Any
// other fault the kernel cannot apply returns an error wrapping
// topology.ErrUnsupported.
//
// Every network and container carries the labels wscluster.test=1,
// wscluster.run, wscluster.owner.pid and wscluster.owner.host. Start removes
// what a crashed run on this host left behind: resources whose owner process
// no longer runs. Close removes everything of its own run.
//
// Container logs are copied to Dir/logs/<node>.log and Dir/logs/redis.log,
// appended across restarts, each start after a JSON line whose msg is
// StartMarker.
package container

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/wscluster/wscluster/internal/freeport"
	"github.com/wscluster/wscluster/topology"
)

// Default images. scripts/build-images.sh builds both without a registry.
const (
	DefaultImage      = "wscluster/node:dev"
	DefaultRedisImage = "wscluster/redis:dev"
)

// Environment variables that override the default images, as in
// scripts/build-images.sh.
const (
	EnvImage      = "WSCLUSTER_NODE_IMAGE"
	EnvRedisImage = "WSCLUSTER_REDIS_IMAGE"
)

// Mechanisms reported by the fault methods.
const (
	MechanismKill       = "docker-kill"
	MechanismRestart    = "docker-start"
	MechanismPause      = "docker-pause"
	MechanismResume     = "docker-unpause"
	MechanismNFTables   = "nftables"
	MechanismNetem      = "netem"
	MechanismDisconnect = "network-disconnect"
)

// Ports inside the containers.
const (
	httpPort    = 8080
	clusterPort = 5410
	redisPort   = 6379
)

// closeTimeout bounds Close when its context has no deadline or is already
// done, so that an interrupted run still removes its containers.
const closeTimeout = time.Minute

// maxRunID bounds the length of a run id, which is part of every container
// name.
const maxRunID = 64

// runIDPattern is the form of a run id, Docker's rule for container names.
var runIDPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// invalidRunIDChars are the characters that RunIDFrom replaces.
var invalidRunIDChars = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// RunIDFrom turns any name, such as a run folder's, into a valid run id.
// Each character that Docker does not allow in a container name becomes
// '-', and a leading '_', '.' or '-' gets an "r" in front. The result is
// cut to 64 characters. An empty name gives "", which New replaces with a
// random id.
func RunIDFrom(name string) string {
	if name == "" {
		return ""
	}
	id := invalidRunIDChars.ReplaceAllString(name, "-")
	if !runIDPattern.MatchString(id) {
		id = "r" + id
	}
	return id[:min(len(id), maxRunID)]
}

// Options are the settings of the container topology that topology.Config
// does not have.
type Options struct {
	// Image is the node image. Default: $WSCLUSTER_NODE_IMAGE, else
	// DefaultImage. It must also contain /wscluster-netfault, which the
	// sidecars run.
	Image string
	// RedisImage is the Redis image, used with the redis engine. Default:
	// $WSCLUSTER_REDIS_IMAGE, else DefaultRedisImage.
	RedisImage string
	// RunID names the run in container names and in the wscluster.run
	// label: 1 to 64 letters, digits, '_', '.' or '-', starting with a
	// letter or digit. RunIDFrom makes one from any name. Default: a random
	// id.
	RunID string
}

// withDefaults fills in the empty fields.
func (o Options) withDefaults() (Options, error) {
	if o.Image == "" {
		o.Image = envOr(EnvImage, DefaultImage)
	}
	if o.RedisImage == "" {
		o.RedisImage = envOr(EnvRedisImage, DefaultRedisImage)
	}
	if o.RunID == "" {
		id, err := randomRunID()
		if err != nil {
			return o, err
		}
		o.RunID = id
	}
	if !runIDPattern.MatchString(o.RunID) || len(o.RunID) > maxRunID {
		return o, fmt.Errorf("container topology: invalid run id %q: use 1 to %d letters, digits, '_', '.' or '-', starting with a letter or digit, or RunIDFrom", o.RunID, maxRunID)
	}
	return o, nil
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

var _ topology.Topology = (*Topology)(nil)

// Topology is a cluster of containers. Create it with New, then call Start,
// and Close when done, also after a failed Start.
type Topology struct {
	cfg  topology.Config
	opts Options
	log  *slog.Logger

	// Fixed by New.
	ids       []string
	hostPorts map[string]int // published HTTP port on 127.0.0.1, by node id

	// closing ends when Close starts, which cuts short a pending start.
	closing context.Context
	stop    context.CancelFunc
	// copyCtx ends the log copies that outlive Close's wait for them.
	copyCtx    context.Context
	copyCancel context.CancelFunc

	mu        sync.Mutex
	started   bool
	closed    bool
	docker    *dockerClient      // set by Start
	members   map[string]*member // by node id and topology.Redis; set by Start
	net       *netState          // set by Start
	logCopies sync.WaitGroup     // log copies of every member
}

// New checks cfg and opts and picks a free port on 127.0.0.1 for each
// node. It starts nothing and does not contact Docker. cfg.Binary is not
// used: the image contains the node.
func New(cfg topology.Config, opts Options) (*Topology, error) {
	cfg = cfg.WithDefaults()
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &Topology{
		cfg:       cfg,
		opts:      opts,
		log:       cmp.Or(cfg.Logger, slog.Default()).With("component", "topology.container", "engine", cfg.Engine, "run", opts.RunID),
		hostPorts: map[string]int{},
	}
	t.closing, t.stop = context.WithCancel(context.Background())
	t.copyCtx, t.copyCancel = context.WithCancel(context.Background())
	for i := 1; i <= cfg.Nodes; i++ {
		id := "n" + strconv.Itoa(i)
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		t.ids = append(t.ids, id)
		t.hostPorts[id] = port
	}
	return t, nil
}

// validate checks cfg and makes the run folder absolute.
func validate(cfg *topology.Config) error {
	switch cfg.Engine {
	case "none", "mesh", "redis":
	default:
		return fmt.Errorf("container topology: invalid engine %q: want none, mesh or redis", cfg.Engine)
	}
	if cfg.Nodes < 1 {
		return fmt.Errorf("container topology: invalid node count %d: want at least 1", cfg.Nodes)
	}
	if cfg.StartTimeout <= 0 {
		return fmt.Errorf("container topology: invalid start timeout %s: want a positive duration", cfg.StartTimeout)
	}
	if cfg.Dir == "" {
		return errors.New("container topology: missing run folder: set Config.Dir")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return fmt.Errorf("container topology: run folder %q: %w", cfg.Dir, err)
	}
	cfg.Dir = dir
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago, below
// the ephemeral range, so that no outgoing connection takes it before
// Docker publishes the node on it.
func freePort() (int, error) {
	port, err := freeport.Get()
	if err != nil {
		return 0, fmt.Errorf("container topology: %w", err)
	}
	return port, nil
}

// RunID returns the run id in the wscluster.run label of every container
// and of the network.
func (t *Topology) RunID() string { return t.opts.RunID }

// Nodes lists the nodes n1..nN in numeric order. It works before Start.
func (t *Topology) Nodes() []topology.Node {
	nodes := make([]topology.Node, 0, len(t.ids))
	for _, id := range t.ids {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(t.hostPorts[id]))
		nodes = append(nodes, topology.Node{
			ID:      id,
			WSURL:   "ws://" + addr + "/ws",
			HTTPURL: "http://" + addr,
			Log:     t.logPath(id),
		})
	}
	return nodes
}

// Links lists every pair of nodes for mesh, every node with Redis for
// redis, and nothing for none.
func (t *Topology) Links() []topology.Link {
	return topology.EngineLinks(t.cfg.Engine, t.ids)
}

func (t *Topology) logPath(name string) string {
	return filepath.Join(t.cfg.Dir, "logs", name+".log")
}

// Start removes stale resources of crashed runs, creates the run's network,
// starts Redis when the engine needs it and then every node, each within
// cfg.StartTimeout, and a sidecar for each. On failure it removes what it
// created and returns an error that names the container and quotes the end
// of its log.
func (t *Topology) Start(ctx context.Context) error {
	t.mu.Lock()
	if t.started || t.closed {
		t.mu.Unlock()
		return errors.New("container topology: Start called twice or after Close; create a new topology with New")
	}
	t.started = true
	t.mu.Unlock()

	// A Close during Start cuts the pending wait short.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatch := context.AfterFunc(t.closing, cancel)
	defer stopWatch()

	if err := t.start(ctx); err != nil {
		t.log.Error("start failed; removing what started", "error", err)
		if closeErr := t.Close(context.Background()); closeErr != nil {
			err = errors.Join(err, closeErr)
		}
		return err
	}
	t.log.Info("topology started", "nodes", len(t.ids), "dir", t.cfg.Dir)
	return nil
}

// start connects to Docker, checks the images, creates the network and
// starts the containers.
func (t *Topology) start(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(t.cfg.Dir, "logs"), 0o755); err != nil {
		return fmt.Errorf("container topology: create the log folder: %w", err)
	}
	docker, err := newDockerClient(ctx)
	if err != nil {
		return err
	}
	if err := t.setDocker(docker); err != nil {
		return err
	}
	if err := docker.checkImages(ctx, t.images()...); err != nil {
		return err
	}
	if _, err := docker.removeStale(ctx, t.log); err != nil {
		return err
	}

	// The network comes first because every container joins it, and Close
	// finds it through t.net.
	nw, err := docker.createNetwork(ctx, t.labels(roleNetwork, ""))
	if err != nil {
		return err
	}
	members, err := t.newMembers(nw)
	if err != nil {
		return errors.Join(err, docker.removeNetwork(context.Background(), nw))
	}
	ns := newNetState(t, nw, members)
	t.mu.Lock()
	closed := t.closed
	if !closed {
		t.net, t.members = ns, members
	}
	t.mu.Unlock()
	if closed {
		return errors.Join(errors.New("container topology: closed during Start"), docker.removeNetwork(context.Background(), nw))
	}
	return t.startMembers(ctx, members)
}

// setDocker stores the Docker client for Close.
func (t *Topology) setDocker(d *dockerClient) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.Join(errors.New("container topology: closed during Start"), d.Close())
	}
	t.docker = d
	return nil
}

// images returns the images that Start needs.
func (t *Topology) images() []string {
	if t.cfg.Engine == "redis" {
		return []string{t.opts.Image, t.opts.RedisImage}
	}
	return []string{t.opts.Image}
}

// startMembers starts Redis first, so that each node finds it at start,
// then the nodes in order, and gives each a sidecar.
func (t *Topology) startMembers(ctx context.Context, members map[string]*member) error {
	order := t.ids
	if t.cfg.Engine == "redis" {
		order = append([]string{topology.Redis}, t.ids...)
	}
	for _, name := range order {
		if err := members[name].start(ctx); err != nil {
			return fmt.Errorf("container topology: %w", err)
		}
		if err := t.net.attach(ctx, name); err != nil {
			return fmt.Errorf("container topology: %w", err)
		}
	}
	return nil
}

// Close removes every container and the network, also when ctx is already
// done, and waits for the log copies to finish. It keeps the run folder.
// Later calls return nil.
func (t *Topology) Close(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	docker, members, ns := t.docker, t.members, t.net
	t.mu.Unlock()
	t.stop()
	defer t.copyCancel()
	if docker == nil {
		return nil
	}
	defer docker.Close()

	// An interrupted run passes a canceled context, and its containers
	// must go all the same.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()

	var errs []error
	if ns != nil {
		errs = append(errs, ns.close(ctx))
	}
	for _, name := range append(append([]string{}, t.ids...), topology.Redis) {
		if m := members[name]; m != nil {
			errs = append(errs, m.remove(ctx))
		}
	}
	if ns != nil {
		errs = append(errs, docker.removeNetwork(ctx, ns.nw))
	}

	// Every copy ends once its container is gone.
	errs = append(errs, t.waitLogCopies(ctx))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("container topology: close: %w", err)
	}
	t.log.Info("topology closed")
	return nil
}

// waitLogCopies waits until every log copy has ended, or ctx ends.
func (t *Topology) waitLogCopies(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		t.logCopies.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.copyCancel()
		return fmt.Errorf("log copies did not end: %w", ctx.Err())
	}
}
