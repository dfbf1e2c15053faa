package netfault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/netfault"
)

// Labels on every container and network these tests create. labelRun holds
// a value unique to one test process, so cleanup never touches resources of
// another run or of another suite.
const (
	labelTest = "wscluster.test"
	labelRun  = "wscluster.test.run"
)

// runID is unique to this test process.
var runID = newRunID()

// builtImages holds the tags scripts/build-images.sh built for this process.
var builtImages struct {
	once         sync.Once
	node, redis  string
	err          error
	removeOnExit []string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(builtImages.removeOnExit) > 0 {
		args := append([]string{"rmi"}, builtImages.removeOnExit...)
		if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "netfault tests: removing image tags %v failed: %v: %s\n", builtImages.removeOnExit, err, out)
		}
	}
	os.Exit(code)
}

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "nf" + hex.EncodeToString(b)
}

// requireDocker skips the test when no Docker daemon answers, unless CI=true,
// where a missing daemon is a broken runner and fails the test.
func requireDocker(t *testing.T) {
	t.Helper()
	err := exec.Command("docker", "info").Run()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but docker info failed: %v", err)
	}
	t.Skipf("no Docker daemon (docker info: %v); set CI=true to make this a failure", err)
}

// buildImages builds both images once per process with tags unique to it, in
// a temporary stage directory, and returns the node and Redis tags. Without
// redis-server on the host it builds only the node image and returns an
// empty Redis tag.
func buildImages(t *testing.T) (node, redisImage string) {
	t.Helper()
	builtImages.once.Do(func() {
		stage, err := os.MkdirTemp("", "wscluster-images-")
		if err != nil {
			builtImages.err = err
			return
		}
		defer os.RemoveAll(stage)
		node := "wscluster/node:test-" + runID
		redisTag := "wscluster/redis:test-" + runID
		args := []string{"--node-image", node, "--redis-image", redisTag,
			"--label", labelTest + "=1", "--stage-dir", stage}
		if _, err := exec.LookPath("redis-server"); err != nil {
			args = append(args, "--no-redis")
			redisTag = ""
		}
		out, err := exec.Command(filepath.Join("..", "scripts", "build-images.sh"), args...).CombinedOutput()
		if err != nil {
			builtImages.err = fmt.Errorf("scripts/build-images.sh: %w\n%s", err, out)
			return
		}
		builtImages.node, builtImages.redis = node, redisTag
		builtImages.removeOnExit = []string{node}
		if redisTag != "" {
			builtImages.removeOnExit = append(builtImages.removeOnExit, redisTag)
		}
	})
	require.NoError(t, builtImages.err)
	return builtImages.node, builtImages.redis
}

// docker runs the docker CLI and returns its trimmed stdout.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := dockerResult(args...)
	require.NoError(t, err, "docker %s: %s", strings.Join(args, " "), errOut)
	return out
}

func dockerResult(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	cmd := exec.Command("docker", args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return strings.TrimSpace(o.String()), strings.TrimSpace(e.String()), err
}

// removeRunResources removes every container and network of this run.
func removeRunResources(t *testing.T) {
	filter := "label=" + labelRun + "=" + runID
	if ids, _, _ := dockerResult("ps", "-aq", "--filter", filter); ids != "" {
		if _, errOut, err := dockerResult(append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...); err != nil {
			t.Errorf("removing containers of run %s: %v: %s", runID, err, errOut)
		}
	}
	if ids, _, _ := dockerResult("network", "ls", "-q", "--filter", filter); ids != "" {
		if _, errOut, err := dockerResult(append([]string{"network", "rm"}, strings.Fields(ids)...)...); err != nil {
			t.Errorf("removing networks of run %s: %v: %s", runID, err, errOut)
		}
	}
}

func labelArgs() []string {
	return []string{"--label", labelTest + "=1", "--label", labelRun + "=" + runID}
}

// mesh is a private Docker network with wscluster nodes and their sidecars.
type mesh struct {
	t       *testing.T
	image   string
	network string
	secret  string
}

func newMesh(t *testing.T, image string) *mesh {
	t.Cleanup(func() { removeRunResources(t) })
	m := &mesh{t: t, image: image, network: "wscluster-" + runID, secret: newRunID() + newRunID()}
	docker(t, append(append([]string{"network", "create"}, labelArgs()...), m.network)...)
	return m
}

func (m *mesh) container(name string) string { return m.network + "-" + name }

// startNode runs a mesh node with fast failure detection, so a partition
// shows in /cluster within about a second.
func (m *mesh) startNode(name string, peers ...string) {
	var peerAddrs []string
	for _, p := range peers {
		peerAddrs = append(peerAddrs, p+":5410")
	}
	args := append([]string{"run", "-d"}, labelArgs()...)
	args = append(args,
		"--name", m.container(name), "--hostname", name,
		"--network", m.network, "--network-alias", name,
		"-p", "127.0.0.1::8080",
		"-e", "WSCLUSTER_CLUSTER_SECRET="+m.secret,
		m.image,
		"--engine", "mesh", "--node-id", name,
		"--peers", strings.Join(peerAddrs, ","), "--cluster-advertise", name+":5410",
		"--heartbeat-interval", "200ms", "--peer-timeout", "1s")
	docker(m.t, args...)
}

// startSidecar runs wscluster-netfault serve in the network namespace of
// node and returns the sidecar's container name.
func (m *mesh) startSidecar(node string) string {
	name := m.container(node) + "-netfault"
	args := append([]string{"run", "-d"}, labelArgs()...)
	args = append(args, "--name", name,
		"--network", "container:"+m.container(node),
		"--cap-add", "NET_ADMIN", "--user", "0",
		"--entrypoint", "/wscluster-netfault", m.image, "serve")
	docker(m.t, args...)
	return name
}

func (m *mesh) ip(node string) string {
	return docker(m.t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", m.container(node))
}

// clusterStatus is the part of a node's /cluster document the tests read.
type clusterStatus struct {
	Peers []struct {
		ID        string `json:"id"`
		Connected bool   `json:"connected"`
	} `json:"peers"`
}

// status returns the /cluster document of node, through its published port.
func (m *mesh) status(node string) (clusterStatus, error) {
	port := docker(m.t, "port", m.container(node), "8080/tcp")
	port = strings.Split(port, "\n")[0]
	port = port[strings.LastIndex(port, ":")+1:]
	var s clusterStatus
	resp, err := http.Get("http://127.0.0.1:" + port + "/cluster")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// reconnects returns the wscluster_peer_reconnects_total sample of node
// for peer, and 0 while the counter was never incremented.
func (m *mesh) reconnects(node, peer string) float64 {
	m.t.Helper()
	body := m.get(node, "/metrics")
	sample := `wscluster_peer_reconnects_total{peer="` + peer + `"} `
	for line := range strings.Lines(body) {
		if value, ok := strings.CutPrefix(line, sample); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			require.NoError(m.t, err, "sample %q", line)
			return v
		}
	}
	return 0
}

// get returns the body of a GET of path on node, through its published
// port.
func (m *mesh) get(node, path string) string {
	m.t.Helper()
	port := docker(m.t, "port", m.container(node), "8080/tcp")
	port = strings.Split(port, "\n")[0]
	port = port[strings.LastIndex(port, ":")+1:]
	resp, err := http.Get("http://127.0.0.1:" + port + path)
	require.NoError(m.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(m.t, err)
	return string(body)
}

// connected returns the ids of node's connected peers.
func (m *mesh) connected(node string) []string {
	s, err := m.status(node)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	ids := []string{}
	for _, p := range s.Peers {
		if p.Connected {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// waitConnected waits until every node in want has exactly the listed peers
// connected.
func (m *mesh) waitConnected(want map[string][]string, timeout time.Duration) {
	m.t.Helper()
	got := map[string][]string{}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for node := range want {
			got[node] = m.connected(node)
		}
		if assert.ObjectsAreEqual(want, got) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	m.t.Fatalf("connected peers after %v: got %v, expected %v", timeout, got, want)
}

// netfaultExec runs the helper in sidecar and returns its output and exit status.
func netfaultExec(t *testing.T, sidecar string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, err := dockerResult(append([]string{"exec", sidecar, "/wscluster-netfault"}, args...)...)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return stdout, stderr, exitErr.ExitCode()
	}
	require.NoError(t, err, "docker exec %s: %s", sidecar, stderr)
	return stdout, stderr, 0
}

func readStatus(t *testing.T, sidecar string) netfault.Status {
	t.Helper()
	out, errOut, code := netfaultExec(t, sidecar, "status")
	require.Equal(t, 0, code, "status failed: %s", errOut)
	var s netfault.Status
	require.NoError(t, json.Unmarshal([]byte(out), &s), "status output %q", out)
	return s
}

func TestPartitionBetweenContainers(t *testing.T) {
	requireDocker(t)
	node, _ := buildImages(t)
	m := newMesh(t, node)

	// Three nodes in a full mesh, and a sidecar in n1's namespace.
	m.startNode("n1", "n2", "n3")
	m.startNode("n2", "n1", "n3")
	m.startNode("n3", "n1", "n2")
	full := map[string][]string{"n1": {"n2", "n3"}, "n2": {"n1", "n3"}, "n3": {"n1", "n2"}}
	m.waitConnected(full, 30*time.Second)
	sidecar := m.startSidecar("n1")
	ip2 := m.ip("n2")

	// Partition n1 from n2: only that pair loses its link, and both still
	// reach n3.
	_, errOut, code := netfaultExec(t, sidecar, "partition", "--drop", ip2)
	require.Equal(t, 0, code, "partition failed: %s", errOut)
	assert.Equal(t, 2, readStatus(t, sidecar).NFTRules, "one input and one output rule")
	m.waitConnected(map[string][]string{"n1": {"n3"}, "n2": {"n3"}, "n3": {"n1", "n2"}}, 10*time.Second)

	// Heal: no rule or qdisc is left, and the link comes back.
	_, errOut, code = netfaultExec(t, sidecar, "heal")
	require.Equal(t, 0, code, "heal failed: %s", errOut)
	healed := readStatus(t, sidecar)
	assert.Equal(t, 0, healed.NFTRules)
	assert.False(t, healed.HasDelay(), "qdiscs after heal: %+v", healed.Qdiscs)
	m.waitConnected(full, 15*time.Second)

	// Ingress loss of 100% from n2 alone cuts n1's view of n2 the same way.
	_, errOut, code = netfaultExec(t, sidecar, "degrade", "--loss", "1", "--peers", ip2)
	require.Equal(t, 0, code, "degrade --loss failed: %s", errOut)
	assert.Equal(t, 1, readStatus(t, sidecar).NFTRules, "one loss rule for the one peer")
	m.waitConnected(map[string][]string{"n1": {"n3"}, "n3": {"n1", "n2"}}, 10*time.Second)
	_, errOut, code = netfaultExec(t, sidecar, "heal")
	require.Equal(t, 0, code, "heal failed: %s", errOut)
	m.waitConnected(full, 15*time.Second)

	t.Run("delay", func(t *testing.T) { testContainerDelay(t, sidecar, ip2) })
	t.Run("reset", func(t *testing.T) { testContainerReset(t, m, sidecar, ip2, full) })
	t.Run("no NET_ADMIN", func(t *testing.T) { testSidecarWithoutNetAdmin(t, m) })
}

// testContainerDelay accepts every kernel. With netem, or with the NFQUEUE
// fallback through the sidecar's serve process, the delay must show in
// status and heal must remove it. Without either, the helper must exit 3
// and name what is missing.
func testContainerDelay(t *testing.T, sidecar, peer string) {
	for _, args := range [][]string{
		{"degrade", "--delay", "50ms", "--jitter", "10ms"},
		{"degrade", "--delay", "50ms", "--peers", peer},
		{"degrade", "--delay", "50ms", "--peers", peer, "--delay-mechanism", "nfqueue"},
	} {
		out, errOut, code := netfaultExec(t, sidecar, args...)
		if code == 3 {
			assert.Regexp(t, `^unsupported: (sch_(netem|prio)|nft_queue|nfnetlink)`, errOut)
			assert.Equal(t, 1, strings.Count(errOut, "\n")+1, "the unsupported message must be one line: %q", errOut)
			assert.False(t, readStatus(t, sidecar).HasDelay(), "a refused degrade left a delay")
			continue
		}
		require.Equal(t, 0, code, "%v: %s", args, errOut)
		var result struct {
			DelayMechanism string `json:"delay_mechanism"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &result), "degrade output %q", out)
		assert.Contains(t, []string{netfault.DelayNetem, netfault.DelayNFQueue}, result.DelayMechanism, "%v", args)
		st := readStatus(t, sidecar)
		assert.True(t, st.HasDelay(), "%v installed no delay: %+v", args, st)
		if result.DelayMechanism == netfault.DelayNFQueue {
			require.NotNil(t, st.NFQueue, "status without the serve process's queue")
			assert.Equal(t, 50*time.Millisecond, st.NFQueue.Delay)
		}
		_, errOut, code = netfaultExec(t, sidecar, "heal")
		require.Equal(t, 0, code, "heal failed: %s", errOut)
		st = readStatus(t, sidecar)
		assert.False(t, st.HasDelay(), "heal left a delay: %+v", st)
		assert.Zero(t, st.NFTRules, "heal left rules")
	}
}

// testContainerReset resets n1's link to n2 with each mechanism and checks
// that n1 counts a reconnect to n2 and that no rule is left.
func testContainerReset(t *testing.T, m *mesh, sidecar, peer string, full map[string][]string) {
	for _, mechanism := range []string{netfault.ResetSockDestroy, netfault.ResetNFTables} {
		before := m.reconnects("n1", "n2")
		out, errOut, code := netfaultExec(t, sidecar, "reset", "--peers", peer, "--mechanism", mechanism)
		if code == 3 {
			assert.Contains(t, errOut, "unsupported: sock_destroy", "%s", mechanism)
			continue
		}
		require.Equal(t, 0, code, "reset --mechanism %s: %s", mechanism, errOut)
		var result netfault.ResetResult
		require.NoError(t, json.Unmarshal([]byte(out), &result), "reset output %q", out)
		assert.Equal(t, mechanism, result.Mechanism)
		assert.Positive(t, result.Connections, "n1 has a link to n2, so at least one connection")
		assert.Zero(t, readStatus(t, sidecar).NFTRules, "rules left after reset")

		deadline := time.Now().Add(15 * time.Second)
		for m.reconnects("n1", "n2") <= before && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		assert.Greater(t, m.reconnects("n1", "n2"), before, "n1 counted no reconnect to n2 after reset with %s", mechanism)
		m.waitConnected(full, 15*time.Second)
	}
}

// testSidecarWithoutNetAdmin checks that a sidecar without CAP_NET_ADMIN gets
// exit status 3 and a message naming the capability.
func testSidecarWithoutNetAdmin(t *testing.T, m *mesh) {
	args := append([]string{"run", "--rm"}, labelArgs()...)
	args = append(args, "--network", "container:"+m.container("n1"), "--user", "0",
		"--entrypoint", "/wscluster-netfault", m.image, "partition", "--drop", "192.0.2.1")
	_, errOut, err := dockerResult(args...)
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, 3, exitErr.ExitCode())
	assert.Contains(t, errOut, "unsupported: CAP_NET_ADMIN")
}

func TestRedisImagePing(t *testing.T) {
	requireDocker(t)
	_, image := buildImages(t)
	if image == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but redis-server is not on PATH, so the Redis image was not built; run scripts/install-deps.sh")
		}
		t.Skip("redis-server is not on PATH, so the Redis image was not built; run scripts/install-deps.sh")
	}
	t.Cleanup(func() { removeRunResources(t) })
	args := append([]string{"run", "-d"}, labelArgs()...)
	id := docker(t, append(args, "-p", "127.0.0.1::6379", image)...)
	port := strings.Split(docker(t, "port", id, "6379/tcp"), "\n")[0]
	addr := "127.0.0.1:" + port[strings.LastIndex(port, ":")+1:]

	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var pong string
	var err error
	for ctx.Err() == nil {
		if pong, err = client.Ping(ctx).Result(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err, "PING %s", addr)
	assert.Equal(t, "PONG", pong)

	// The image must not persist: an empty "save" and no append-only file.
	save, err := client.ConfigGet(ctx, "save").Result()
	require.NoError(t, err)
	assert.Equal(t, "", save["save"])
	aof, err := client.ConfigGet(ctx, "appendonly").Result()
	require.NoError(t, err)
	assert.Equal(t, "no", aof["appendonly"])
}
