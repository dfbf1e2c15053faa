// Package topologytest holds what the tests of every topology share: waits
// on the nodes' HTTP endpoints, metric reads, a publisher and subscriber
// pair that times publishes across nodes, and the tails of the node logs
// for a failed test.
package topologytest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/topology"
)

// WaitTimeout bounds every wait for a topology to reach a state.
const WaitTimeout = 20 * time.Second

// Status is the part of /cluster and /readyz that the tests read.
type Status struct {
	Ready          bool `json:"ready"`
	ConnectedPeers int  `json:"connected_peers"`
	Peers          []struct {
		ID        string `json:"id"`
		Connected bool   `json:"connected"`
	} `json:"peers"`
}

// Connected reports whether the status lists peer as connected.
func (s Status) Connected(peer string) bool {
	for _, p := range s.Peers {
		if p.ID == peer {
			return p.Connected
		}
	}
	return false
}

// httpClient times out quickly, so that a paused node shows as a timeout.
var httpClient = &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}

// Get returns the status code and body of a GET.
func Get(url string) (int, string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// ClusterStatus returns a node's /cluster document.
func ClusterStatus(n topology.Node) (Status, error) {
	code, body, err := Get(n.HTTPURL + "/cluster")
	if err != nil {
		return Status{}, err
	}
	if code != http.StatusOK {
		return Status{}, fmt.Errorf("GET /cluster of %s: status %d", n.ID, code)
	}
	var s Status
	err = json.Unmarshal([]byte(body), &s)
	return s, err
}

// WaitUntil polls cond until it returns "" and fails the test with the
// last description of the difference when WaitTimeout passes. It returns
// how long the wait took.
func WaitUntil(t testing.TB, what string, cond func() string) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < WaitTimeout {
		if last = cond(); last == "" {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %s", WaitTimeout, what, last)
	return 0
}

// WaitConnectedPeers waits until node n reports want connected peers.
func WaitConnectedPeers(t testing.TB, n topology.Node, want int) time.Duration {
	t.Helper()
	return WaitUntil(t, fmt.Sprintf("%s to report %d connected peers", n.ID, want), func() string {
		s, err := ClusterStatus(n)
		if err != nil {
			return err.Error()
		}
		if s.ConnectedPeers != want {
			return fmt.Sprintf("connected_peers is %d", s.ConnectedPeers)
		}
		return ""
	})
}

// WaitPeer waits until node n reports peer as connected or not.
func WaitPeer(t testing.TB, n topology.Node, peer string, connected bool) time.Duration {
	t.Helper()
	return WaitUntil(t, fmt.Sprintf("%s to report %s connected=%t", n.ID, peer, connected), func() string {
		s, err := ClusterStatus(n)
		if err != nil {
			return err.Error()
		}
		if s.Connected(peer) != connected {
			return fmt.Sprintf("peers are %+v", s.Peers)
		}
		return ""
	})
}

// RequirePeers checks that node n now reports exactly the given peers as
// connected.
func RequirePeers(t testing.TB, n topology.Node, peers ...string) {
	t.Helper()
	s, err := ClusterStatus(n)
	require.NoError(t, err)
	for _, p := range peers {
		require.True(t, s.Connected(p), "%s reports %s disconnected: %+v", n.ID, p, s.Peers)
	}
	require.Equal(t, len(peers), s.ConnectedPeers, "connected peers of %s: %+v", n.ID, s.Peers)
}

// WaitReadyz waits until node n's /readyz returns want.
func WaitReadyz(t testing.TB, n topology.Node, want int) time.Duration {
	t.Helper()
	return WaitUntil(t, fmt.Sprintf("/readyz of %s to return %d", n.ID, want), func() string {
		code, body, err := Get(n.HTTPURL + "/readyz")
		if err != nil {
			return err.Error()
		}
		if code != want {
			return fmt.Sprintf("status %d, body %s", code, body)
		}
		return ""
	})
}

// RequireHealthy checks that node n's /healthz returns 200.
func RequireHealthy(t testing.TB, n topology.Node) {
	t.Helper()
	code, _, err := Get(n.HTTPURL + "/healthz")
	require.NoError(t, err, "GET /healthz of %s", n.ID)
	require.Equal(t, http.StatusOK, code, "GET /healthz of %s", n.ID)
}

// Metric returns the value of one sample of a node's /metrics, such as
// `wscluster_peer_reconnects_total{peer="n2"}`, and 0 when the sample is
// missing, as a counter that never counted is.
func Metric(t testing.TB, n topology.Node, sample string) float64 {
	t.Helper()
	code, body, err := Get(n.HTTPURL + "/metrics")
	require.NoError(t, err, "GET /metrics of %s", n.ID)
	require.Equal(t, http.StatusOK, code, "GET /metrics of %s", n.ID)
	for line := range strings.Lines(body) {
		if value, ok := strings.CutPrefix(strings.TrimSpace(line), sample+" "); ok {
			v, err := strconv.ParseFloat(value, 64)
			require.NoError(t, err, "sample %s of %s", sample, n.ID)
			return v
		}
	}
	return 0
}

// LogTails logs the last lines of every log in dir/logs.
func LogTails(t testing.TB, dir string) {
	paths, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Logf("read %s: %v", path, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		t.Logf("last lines of %s:\n%s", filepath.Base(path), strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
}
