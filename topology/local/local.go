// Package local runs a wscluster cluster as real `wscluster serve`
// processes on 127.0.0.1, with an in-process TCP fault proxy
// (internal/faultproxy) on every link, and implements topology.Topology.
//
// Every mesh link from node i to node j goes through its own proxy: node
// i's --peers lists its proxies to every other node, and peer exchange is
// off, so no node dials a direct address: a node still learns each peer's
// advertised address, but it dials learned addresses only with peer
// exchange on. With --engine redis, each node
// reaches one redis-server through its own proxy. A partition blackholes
// the proxies of a link, latency is set on them, and a connection reset
// closes their connections. Processes are killed with SIGKILL and paused
// with SIGSTOP, to their whole process group.
//
// Node logs (stdout and stderr) go to Dir/logs/<node>.log and Redis's to
// Dir/logs/redis.log, appended across restarts, each start after a JSON
// line whose msg is StartMarker. Children get the suite's environment
// without WSCLUSTER_ variables, so only the flags set here configure them.
//
// On Linux, a crash of the suite itself (panic, SIGKILL) kills every child
// through Pdeathsig, with the caveat noted at sysProcAttr in
// process_linux.go. On other systems the children survive it. An orderly
// exit must call Close.
package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/wscluster/wscluster/internal/freeport"
	"github.com/wscluster/wscluster/topology"
)

// Mechanisms reported by the fault methods.
const (
	MechanismKill    = "SIGKILL"
	MechanismRestart = "restart"
	MechanismPause   = "SIGSTOP"
	MechanismResume  = "SIGCONT"
	MechanismProxy   = "tcp-proxy"
)

var _ topology.Topology = (*Topology)(nil)

// Topology is a cluster of local processes. Create it with New, then call
// Start, and Close when done, also after a failed Start.
type Topology struct {
	cfg   topology.Config
	log   *slog.Logger
	redis string // path of redis-server, with --engine redis

	// Fixed by New.
	ids       []string
	httpAddrs map[string]string // by node id
	clusAddrs map[string]string // by node id, with --engine mesh
	redisPort int

	// closing ends when Close starts, which cuts short a pending start.
	closing context.Context
	stop    context.CancelFunc

	mu      sync.Mutex
	started bool
	closed  bool
	procs   map[string]*process // by node id and topology.Redis; set by Start
	net     *network            // set by Start
}

// New checks cfg and picks free loopback ports for every node and Redis.
// It starts nothing.
func New(cfg topology.Config) (*Topology, error) {
	cfg = cfg.WithDefaults()
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	t := &Topology{
		cfg:       cfg,
		log:       cmp.Or(cfg.Logger, slog.Default()).With("component", "topology.local", "engine", cfg.Engine),
		httpAddrs: map[string]string{},
		clusAddrs: map[string]string{},
	}
	t.closing, t.stop = context.WithCancel(context.Background())
	if cfg.Engine == "redis" {
		path, err := lookupRedis()
		if err != nil {
			return nil, err
		}
		t.redis = path
	}
	if err := t.pickPorts(); err != nil {
		return nil, err
	}
	return t, nil
}

// validate checks cfg and makes its paths absolute, because the children
// run in cfg.Dir.
func validate(cfg *topology.Config) error {
	switch cfg.Engine {
	case "none", "mesh", "redis":
	default:
		return fmt.Errorf("local topology: invalid engine %q: want none, mesh or redis", cfg.Engine)
	}
	if cfg.Nodes < 1 {
		return fmt.Errorf("local topology: invalid node count %d: want at least 1", cfg.Nodes)
	}
	if cfg.StartTimeout <= 0 {
		return fmt.Errorf("local topology: invalid start timeout %s: want a positive duration", cfg.StartTimeout)
	}
	if cfg.Dir == "" {
		return errors.New("local topology: missing run folder: set Config.Dir")
	}
	if cfg.Binary == "" {
		return errors.New("local topology: missing wscluster binary: set Config.Binary, e.g. to bin/wscluster after make build")
	}

	var err error
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return fmt.Errorf("local topology: run folder %q: %w", cfg.Dir, err)
	}
	if cfg.Binary, err = filepath.Abs(cfg.Binary); err != nil {
		return fmt.Errorf("local topology: binary %q: %w", cfg.Binary, err)
	}

	info, err := os.Stat(cfg.Binary)
	if err != nil {
		return fmt.Errorf("local topology: wscluster binary %s: %w; build it with go build -o %s ./cmd/wscluster", cfg.Binary, err, cfg.Binary)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("local topology: wscluster binary %s is not an executable file (mode %s)", cfg.Binary, info.Mode())
	}
	return nil
}

// pickPorts names the nodes and picks a free loopback port for each
// listener. It reserves nothing: each port was free when picked.
//
// NOTE: a port that another program binds between New and a (re)start
// makes that start fail with the bind error in the log tail. Restarts keep
// their ports, so the window reopens at every Restart.
func (t *Topology) pickPorts() error {
	for i := 1; i <= t.cfg.Nodes; i++ {
		id := "n" + strconv.Itoa(i)
		t.ids = append(t.ids, id)
		port, err := freePort()
		if err != nil {
			return err
		}
		t.httpAddrs[id] = loopback(port)
		if t.cfg.Engine != "mesh" {
			continue
		}
		if port, err = freePort(); err != nil {
			return err
		}
		t.clusAddrs[id] = loopback(port)
	}
	if t.cfg.Engine == "redis" {
		port, err := freePort()
		if err != nil {
			return err
		}
		t.redisPort = port
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago, below
// the ephemeral range, so that no outgoing connection takes it before the
// node binds it.
func freePort() (int, error) {
	port, err := freeport.Get()
	if err != nil {
		return 0, fmt.Errorf("local topology: %w", err)
	}
	return port, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Nodes lists the nodes n1..nN in numeric order. It works before Start.
func (t *Topology) Nodes() []topology.Node {
	nodes := make([]topology.Node, 0, len(t.ids))
	for _, id := range t.ids {
		nodes = append(nodes, topology.Node{
			ID:      id,
			WSURL:   "ws://" + t.httpAddrs[id] + "/ws",
			HTTPURL: "http://" + t.httpAddrs[id],
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

// Start starts Redis and its proxies when the engine needs them, the mesh
// proxies, and then every node in order, each within cfg.StartTimeout. On
// failure it stops what it started and returns an error that names the
// process and quotes the end of its log.
func (t *Topology) Start(ctx context.Context) error {
	t.mu.Lock()
	if t.started || t.closed {
		t.mu.Unlock()
		return errors.New("local topology: Start called twice or after Close; create a new topology with New")
	}
	t.started = true
	t.mu.Unlock()

	// A Close during Start cuts the pending wait short.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatch := context.AfterFunc(t.closing, cancel)
	defer stopWatch()

	if err := t.start(ctx); err != nil {
		t.log.Error("start failed; stopping what started", "error", err)
		if closeErr := t.Close(context.Background()); closeErr != nil {
			err = errors.Join(err, closeErr)
		}
		return err
	}
	t.log.Info("topology started", "nodes", len(t.ids), "dir", t.cfg.Dir)
	return nil
}

// start builds the proxies and processes and starts the processes.
func (t *Topology) start(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(t.cfg.Dir, "logs"), 0o755); err != nil {
		return fmt.Errorf("local topology: create the log folder: %w", err)
	}

	// The proxies come before the nodes, because a node's flags name them.
	clusterAddrs := make([]string, 0, len(t.ids))
	for _, id := range t.ids {
		clusterAddrs = append(clusterAddrs, t.clusAddrs[id])
	}
	netw, err := newNetwork(t.cfg.Engine, t.ids, clusterAddrs, loopback(t.redisPort))
	if err != nil {
		return fmt.Errorf("local topology: %w", err)
	}
	procs, err := t.newProcesses(netw)
	if err != nil {
		return errors.Join(err, netw.close())
	}

	// A Close that ran before this point found nothing to stop, so the
	// proxies are closed here and no process starts.
	t.mu.Lock()
	closed := t.closed
	if !closed {
		t.procs, t.net = procs, netw
	}
	t.mu.Unlock()
	if closed {
		return errors.Join(errors.New("local topology: closed during Start"), netw.close())
	}

	// Redis comes first, so that each node finds it at start.
	order := t.ids
	if t.cfg.Engine == "redis" {
		order = append([]string{topology.Redis}, t.ids...)
	}
	for _, name := range order {
		if err := procs[name].start(ctx, t.cfg.StartTimeout); err != nil {
			return fmt.Errorf("local topology: %w", err)
		}
	}
	return nil
}

// newProcesses returns the processes of Redis, with --engine redis, and of
// every node, by name. It starts none.
func (t *Topology) newProcesses(netw *network) (map[string]*process, error) {
	procs := map[string]*process{}
	if t.cfg.Engine == "redis" {
		dir := filepath.Join(t.cfg.Dir, "redis")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("local topology: create the Redis folder: %w", err)
		}
		redisAddr := loopback(t.redisPort)
		procs[topology.Redis] = t.newProcess(topology.Redis, redisArgv(t.redis, t.redisPort, dir),
			func(ctx context.Context) error { return pingRedis(ctx, redisAddr) })
	}
	for _, id := range t.ids {
		healthz := "http://" + t.httpAddrs[id] + "/healthz"
		procs[id] = t.newProcess(id, t.nodeArgv(id, netw), func(ctx context.Context) error { return getOK(ctx, healthz) })
	}
	return procs, nil
}

func (t *Topology) newProcess(name string, argv []string, probe func(context.Context) error) *process {
	return &process{
		name:    name,
		argv:    argv,
		dir:     t.cfg.Dir,
		logPath: t.logPath(name),
		probe:   probe,
		log:     t.log.With("node", name),
	}
}

// nodeArgv returns the command line of node id.
func (t *Topology) nodeArgv(id string, netw *network) []string {
	c := t.cfg
	argv := append([]string{c.Binary, "serve", "--listen", t.httpAddrs[id]}, c.NodeFlags(id)...)
	switch c.Engine {
	case "mesh":
		// The node advertises its real listener, but with peer exchange
		// off no node dials an advertised address, only its proxies.
		argv = append(argv,
			"--cluster-listen", t.clusAddrs[id],
			"--cluster-advertise", t.clusAddrs[id],
			"--peer-exchange=false")
		if peers := netw.peerAddrs(id, t.ids); len(peers) > 0 {
			argv = append(argv, "--peers", strings.Join(peers, ","))
		}
	case "redis":
		argv = append(argv, "--redis-addr", netw.redis[id].Addr())
	}
	return append(argv, c.ExtraArgs...)
}

// probeClient makes each probe on a new connection, so that no pooled
// connection outlives a restart.
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// getOK returns nil when a GET of url returns status 200.
func getOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %s", url, resp.Status)
	}
	return nil
}

// Close kills every process still running, resuming paused ones first,
// and closes the proxies. It keeps the run folder. Later calls return nil.
func (t *Topology) Close(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	procs, netw := t.procs, t.net
	t.mu.Unlock()
	t.stop()

	// Nodes go before Redis, so that no node logs a lost Redis at the end.
	var errs []error
	for _, id := range t.ids {
		if p := procs[id]; p != nil {
			errs = append(errs, p.stop(ctx))
		}
	}
	if p := procs[topology.Redis]; p != nil {
		errs = append(errs, p.stop(ctx))
	}
	if netw != nil {
		errs = append(errs, netw.close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("local topology: close: %w", err)
	}
	t.log.Info("topology closed")
	return nil
}
