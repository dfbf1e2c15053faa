package container

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	mobynet "github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/wscluster/wscluster/topology"
)

// pollInterval is the time between two readiness checks.
const pollInterval = 100 * time.Millisecond

var loopbackIP = netip.MustParseAddr("127.0.0.1")

// newMembers returns the members of Redis, with the redis engine, and of
// every node, by name. It starts none.
func (t *Topology) newMembers(nw *testcontainers.DockerNetwork) (map[string]*member, error) {
	members := map[string]*member{}
	if t.cfg.Engine == "redis" {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		members[topology.Redis] = t.newMember(topology.Redis, t.opts.RedisImage, t.redisCustomizers(nw, port))
	}
	for _, id := range t.ids {
		members[id] = t.newMember(id, t.opts.Image, t.nodeCustomizers(id, nw))
	}
	return members, nil
}

// commonCustomizers are the name, labels, hostname and network alias of a
// node or Redis, and a port published on 127.0.0.1 only.
func (t *Topology) commonCustomizers(name, role string, nw *testcontainers.DockerNetwork, port, hostPort int) []testcontainers.ContainerCustomizer {
	exposed := strconv.Itoa(port) + "/tcp"
	return []testcontainers.ContainerCustomizer{
		testcontainers.WithName(t.containerName(name)),
		testcontainers.WithLabels(t.labels(role, name)),
		network.WithNetwork([]string{name}, nw),
		testcontainers.WithExposedPorts(exposed),
		testcontainers.WithConfigModifier(func(c *container.Config) { c.Hostname = name }),
		testcontainers.WithHostConfigModifier(func(h *container.HostConfig) {
			h.PortBindings = mobynet.PortMap{
				mobynet.MustParsePort(exposed): {{HostIP: loopbackIP, HostPort: strconv.Itoa(hostPort)}},
			}
		}),
	}
}

// nodeCustomizers return the request of node id's container: the flags of
// the node and a wait for /healthz through the published port.
func (t *Topology) nodeCustomizers(id string, nw *testcontainers.DockerNetwork) []testcontainers.ContainerCustomizer {
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(t.hostPorts[id])) + "/healthz"
	healthz := probeStrategy{
		description: "GET " + url,
		timeout:     t.cfg.StartTimeout,
		probe:       func(ctx context.Context) error { return getOK(ctx, url) },
	}
	return append(t.commonCustomizers(id, roleNode, nw, httpPort, t.hostPorts[id]),
		testcontainers.WithCmd(t.nodeArgs(id)...),
		testcontainers.WithWaitStrategy(healthz))
}

// nodeArgs returns the flags of node id; the image's entrypoint is
// "/wscluster serve".
func (t *Topology) nodeArgs(id string) []string {
	c := t.cfg
	args := append([]string{"--listen", ":" + strconv.Itoa(httpPort)}, c.NodeFlags(id)...)
	switch c.Engine {
	case "mesh":
		// Peers are dialled by name, so a restarted peer with a new address
		// is found again. Peer exchange stays on: a partition drops packets
		// in the kernel, so no learned address goes around it.
		args = append(args,
			"--cluster-listen", ":"+strconv.Itoa(clusterPort),
			"--cluster-advertise", net.JoinHostPort(id, strconv.Itoa(clusterPort)))
		var peers []string
		for _, peer := range t.ids {
			if peer != id {
				peers = append(peers, net.JoinHostPort(peer, strconv.Itoa(clusterPort)))
			}
		}
		if len(peers) > 0 {
			args = append(args, "--peers", strings.Join(peers, ","))
		}
	case "redis":
		args = append(args, "--redis-addr", net.JoinHostPort(topology.Redis, strconv.Itoa(redisPort)))
	}
	return append(args, c.ExtraArgs...)
}

// redisCustomizers return the request of the Redis container, which counts
// as started once a PING through the published port gets PONG.
func (t *Topology) redisCustomizers(nw *testcontainers.DockerNetwork, hostPort int) []testcontainers.ContainerCustomizer {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(hostPort))
	ping := probeStrategy{
		description: "PING to Redis at " + addr,
		timeout:     t.cfg.StartTimeout,
		probe:       func(ctx context.Context) error { return pingRedis(ctx, addr) },
	}
	return append(t.commonCustomizers(topology.Redis, roleRedis, nw, redisPort, hostPort),
		testcontainers.WithWaitStrategy(ping))
}

// probeStrategy waits until probe succeeds. It probes the port published
// on 127.0.0.1 itself, because wait.ForHTTP of testcontainers-go dials the
// Docker bridge's gateway address when this process runs in a container,
// where nothing is published. The images have no shell, so no check can
// run inside them.
type probeStrategy struct {
	description string
	timeout     time.Duration
	probe       func(ctx context.Context) error
}

func (s probeStrategy) String() string { return s.description }

// WaitUntilReady polls until the probe succeeds, the container stops, or
// the timeout passes.
func (s probeStrategy) WaitUntilReady(ctx context.Context, target wait.StrategyTarget) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	for {
		probeCtx, probeCancel := context.WithTimeout(ctx, time.Second)
		err := s.probe(probeCtx)
		probeCancel()
		if err == nil {
			return nil
		}
		state, stateErr := target.State(ctx)
		if stateErr == nil && !state.Running {
			return fmt.Errorf("the container stopped (exit code %d) before %s succeeded", state.ExitCode, s.description)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not succeed within %s (last error: %w)", s.description, s.timeout, err)
		case <-time.After(pollInterval):
		}
	}
}

// probeClient makes each probe on a new connection, so that no pooled
// connection outlives a restart.
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

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

// pingRedis sends one PING on a fresh connection and expects +PONG.
func pingRedis(ctx context.Context, addr string) error {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			return err
		}
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(reply) != "+PONG" {
		return errors.New("unexpected reply to PING: " + strconv.Quote(reply))
	}
	return nil
}
