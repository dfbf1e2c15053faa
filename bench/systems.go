package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Systems the benchmark can start. The ours-* systems are wscluster nodes,
// the peer-* systems nodes of the centrifuge-based peer server.
const (
	SystemOursNone   = "ours-none"
	SystemOursMesh2  = "ours-mesh2"
	SystemOursMesh3  = "ours-mesh3"
	SystemOursRedis2 = "ours-redis2"
	SystemPeerSingle = "peer-single"
	SystemPeerRedis2 = "peer-redis2"
)

// system describes one cluster to start.
type system struct {
	name  string
	peer  bool
	nodes int
	// engine is none, mesh or redis.
	engine string
}

var systems = map[string]system{
	SystemOursNone:   {name: SystemOursNone, nodes: 1, engine: "none"},
	SystemOursMesh2:  {name: SystemOursMesh2, nodes: 2, engine: "mesh"},
	SystemOursMesh3:  {name: SystemOursMesh3, nodes: 3, engine: "mesh"},
	SystemOursRedis2: {name: SystemOursRedis2, nodes: 2, engine: "redis"},
	SystemPeerSingle: {name: SystemPeerSingle, peer: true, nodes: 1, engine: "none"},
	SystemPeerRedis2: {name: SystemPeerRedis2, peer: true, nodes: 2, engine: "redis"},
}

// environment holds the binaries and CPU lists that every case needs to
// start processes.
type environment struct {
	bins binaries
	// serverCPUs and loadgenCPUs are taskset CPU lists, or empty when the
	// machine has one CPU and nothing is pinned.
	serverCPUs, loadgenCPUs string
	log                     *slog.Logger
}

// cluster is a started system.
type cluster struct {
	sys       system
	nodes     []*process
	httpAddrs []string
	redis     *process
	redisCli  *redis.Client
}

// wsURLs returns the WebSocket URL of every node.
func (c *cluster) wsURLs() []string {
	path := "/ws"
	if c.sys.peer {
		path = "/connection/websocket"
	}
	urls := make([]string, len(c.httpAddrs))
	for i, addr := range c.httpAddrs {
		urls[i] = "ws://" + addr + path
	}
	return urls
}

// serverPIDs returns the node processes and Redis, whose CPU the benchmark
// charges to the system.
func (c *cluster) serverPIDs() []int {
	var pids []int
	for _, p := range c.nodes {
		pids = append(pids, p.pid())
	}
	if c.redis != nil {
		pids = append(pids, c.redis.pid())
	}
	return pids
}

// checkAlive returns the failure of the first process that exited.
func (c *cluster) checkAlive() error {
	for _, p := range append(c.nodes, c.redis) {
		if p != nil && !p.alive() {
			return p.failure()
		}
	}
	return nil
}

func (c *cluster) stop() {
	for _, p := range c.nodes {
		p.stop(10 * time.Second)
	}
	if c.redisCli != nil {
		_ = c.redisCli.Close()
	}
	if c.redis != nil {
		c.redis.stop(5 * time.Second)
	}
}

// startCluster starts sys and waits until every node is ready and, in a
// cluster, connected to every other node.
func startCluster(ctx context.Context, env *environment, sys system) (*cluster, error) {
	c := &cluster{sys: sys}
	ok := false
	defer func() {
		if !ok {
			c.stop()
		}
	}()
	if sys.engine == "redis" {
		if err := c.startRedis(ctx, env); err != nil {
			return nil, err
		}
	}
	var err error
	if sys.peer {
		err = c.startPeers(ctx, env)
	} else {
		err = c.startOurs(ctx, env)
	}
	if err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func (c *cluster) startRedis(ctx context.Context, env *environment) error {
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server is not on PATH; install it (Debian: apt-get install redis-server): %w", err)
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	argv := []string{binary, "--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}
	c.redis, err = startProcess("redis-server "+addr, env.serverCPUs, argv, nil, nil)
	if err != nil {
		return err
	}
	c.redisCli = redis.NewClient(&redis.Options{Addr: addr})
	deadline := time.Now().Add(startTimeout)
	for c.redisCli.Ping(ctx).Err() != nil {
		if !c.redis.alive() {
			return c.redis.failure()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server at %s did not respond to PING within %v; its last output:\n%s", addr, startTimeout, c.redis.output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func (c *cluster) redisAddr() string { return c.redisCli.Options().Addr }

// startOurs starts wscluster nodes n1..nN with the system's engine.
func (c *cluster) startOurs(ctx context.Context, env *environment) error {
	n := c.sys.nodes
	ports, err := freePorts(2 * n)
	if err != nil {
		return err
	}
	clusterAddrs := make([]string, n)
	for i := range n {
		clusterAddrs[i] = "127.0.0.1:" + strconv.Itoa(ports[n+i])
	}
	for i := range n {
		httpAddr := "127.0.0.1:" + strconv.Itoa(ports[i])
		argv := []string{env.bins.wscluster, "serve", "--listen", httpAddr,
			"--node-id", "n" + strconv.Itoa(i+1), "--engine", c.sys.engine, "--log-level", "warn"}
		switch c.sys.engine {
		case "mesh":
			var peers []string
			for j, addr := range clusterAddrs {
				if j != i {
					peers = append(peers, addr)
				}
			}
			argv = append(argv, "--cluster-listen", clusterAddrs[i], "--cluster-advertise", clusterAddrs[i],
				"--peers", strings.Join(peers, ","), "--cluster-secret", "wscluster-bench-secret")
		case "redis":
			argv = append(argv, "--redis-addr", c.redisAddr())
		}
		p, err := startProcess(fmt.Sprintf("wscluster node n%d", i+1), env.serverCPUs, argv, nil, nil)
		if err != nil {
			return err
		}
		c.nodes = append(c.nodes, p)
		c.httpAddrs = append(c.httpAddrs, httpAddr)
	}

	// A node is ready for the benchmark when it is connected to every other
	// node, so that no publish of the run is lost to a link still forming.
	for i, p := range c.nodes {
		err := waitHTTP(ctx, p, "http://"+c.httpAddrs[i]+"/cluster", func(status int, body []byte) bool {
			var s struct {
				Ready          bool `json:"ready"`
				ConnectedPeers int  `json:"connected_peers"`
			}
			return status == http.StatusOK && json.Unmarshal(body, &s) == nil && s.Ready && s.ConnectedPeers == n-1
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// startPeers starts centrifuge-based peer nodes, sharing Redis when the
// system's engine is redis.
func (c *cluster) startPeers(ctx context.Context, env *environment) error {
	ports, err := freePorts(c.sys.nodes)
	if err != nil {
		return err
	}
	for i, port := range ports {
		httpAddr := "127.0.0.1:" + strconv.Itoa(port)
		argv := []string{env.bins.peer, "-listen", httpAddr, "-name", "p" + strconv.Itoa(i+1)}
		if c.sys.engine == "redis" {
			argv = append(argv, "-redis-addr", c.redisAddr())
		}
		p, err := startProcess(fmt.Sprintf("peer node p%d", i+1), env.serverCPUs, argv, nil, nil)
		if err != nil {
			return err
		}
		c.nodes = append(c.nodes, p)
		c.httpAddrs = append(c.httpAddrs, httpAddr)
		err = waitHTTP(ctx, p, "http://"+httpAddr+"/healthz", func(status int, _ []byte) bool { return status == http.StatusOK })
		if err != nil {
			return err
		}
	}
	return nil
}

// backplaneCount returns the number of backplane messages the system has
// sent so far: Redis commands processed for a Redis engine, envelopes sent
// between nodes for the mesh, and 0 for a single node.
func (c *cluster) backplaneCount(ctx context.Context) (int64, error) {
	switch {
	case c.redisCli != nil:
		info, err := c.redisCli.Info(ctx, "stats").Result()
		if err != nil {
			return 0, fmt.Errorf("read INFO stats of Redis: %w", err)
		}
		return infoField(info, "total_commands_processed")
	case c.sys.engine == "mesh":
		var total int64
		for _, addr := range c.httpAddrs {
			n, err := sumMetric(ctx, "http://"+addr+"/metrics", "wscluster_peer_envelopes_sent_total")
			if err != nil {
				return 0, err
			}
			total += n
		}
		return total, nil
	default:
		return 0, nil
	}
}

// infoField reads an integer field of a Redis INFO reply.
func infoField(info, name string) (int64, error) {
	for _, line := range strings.Split(info, "\n") {
		if value, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return strconv.ParseInt(value, 10, 64)
		}
	}
	return 0, fmt.Errorf("redis INFO has no field %s", name)
}

// sumMetric adds up every series of a Prometheus counter at url.
func sumMetric(ctx context.Context, url, name string) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, fmt.Errorf("read metrics at %s: %w", url, err)
	}
	defer resp.Body.Close()
	return sumSeries(resp.Body, name)
}

func sumSeries(r io.Reader, name string) (int64, error) {
	var total float64
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("malformed metric line %q: %w", line, err)
		}
		total += v
	}
	return int64(total), scanner.Err()
}
