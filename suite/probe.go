package suite

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// Probe intervals. Readiness is sampled often enough to time recovery to
// within a quarter second; metrics only feed end-of-run totals.
const (
	readyInterval   = 250 * time.Millisecond
	metricsInterval = 2 * time.Second
	probeTimeout    = time.Second
)

// scrapedMetrics are the /metrics series the checkers read: the backplane
// traffic for loop freedom, and the node's incarnation, which separates a
// restarted node's fresh counters from the old ones.
var scrapedMetrics = []string{
	"wscluster_peer_envelopes_received_total",
	"wscluster_peer_envelopes_sent_total",
	"wscluster_messages_replayed_total",
	"wscluster_duplicates_dropped_total",
	"wscluster_replay_losses_total",
	"wscluster_messages_in_total",
	"process_start_time_seconds",
	"wscluster_node_info",
}

// prober records every node's /readyz and /metrics in the history until
// its context ends.
type prober struct {
	nodes  []topology.Node
	rec    *history.Recorder
	client *http.Client
}

func newProber(nodes []topology.Node, rec *history.Recorder) *prober {
	return &prober{nodes: nodes, rec: rec, client: &http.Client{Timeout: probeTimeout}}
}

// run samples until ctx ends, then takes one last metrics scrape of every
// node so the totals include the end of the run.
func (p *prober) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range p.nodes {
		wg.Go(func() { p.loop(ctx, readyInterval, func() { p.ready(ctx, n) }) })
		wg.Go(func() { p.loop(ctx, metricsInterval, func() { p.metrics(ctx, n) }) })
	}
	wg.Wait()

	final, cancel := context.WithTimeout(context.Background(), 2*probeTimeout)
	defer cancel()
	for _, n := range p.nodes {
		p.metrics(final, n)
	}
}

func (p *prober) loop(ctx context.Context, every time.Duration, sample func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ready records one /readyz response: 200 is ready, 503 is not, and
// anything else (no response, another status) is recorded as an error.
func (p *prober) ready(ctx context.Context, n topology.Node) {
	op := history.Op{Type: history.Probe, F: history.FReady, Process: history.ProcessProbe, Node: n.ID}
	resp, err := p.get(ctx, n.HTTPURL+"/readyz")
	switch {
	case err != nil:
		op.Error = err.Error()
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusServiceUnavailable:
		ready := resp.StatusCode == http.StatusOK
		op.Ready = &ready
	default:
		op.Error = "unexpected status " + resp.Status
	}
	if resp != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if ctx.Err() != nil {
		return
	}
	p.rec.Record(op)
}

func (p *prober) metrics(ctx context.Context, n topology.Node) {
	resp, err := p.get(ctx, n.HTTPURL+"/metrics")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	values, err := parseMetrics(resp.Body)
	if err != nil || len(values) == 0 {
		return
	}
	inc := incarnation(values)
	p.rec.Record(history.Op{
		Type: history.Probe, F: history.FMetrics, Process: history.ProcessProbe,
		Node: n.ID, Metrics: values, Incarnation: inc,
	})
}

func (p *prober) get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return p.client.Do(req)
}

// parseMetrics reads the Prometheus text format and keeps the series in
// scrapedMetrics, keyed by the series as printed, e.g.
// `wscluster_peer_envelopes_received_total{kind="publish",peer="n2"}`.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || !wanted(line) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return out, fmt.Errorf("suite: metrics line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

func wanted(line string) bool {
	for _, name := range scrapedMetrics {
		if strings.HasPrefix(line, name) && len(line) > len(name) && (line[len(name)] == '{' || line[len(name)] == ' ') {
			return true
		}
	}
	return false
}

// waitReady polls every node's /readyz until all return 200, so the main
// phase starts on a formed cluster. It names the nodes still not ready
// when ctx ends.
func waitReady(ctx context.Context, nodes []topology.Node) error {
	client := &http.Client{Timeout: probeTimeout}
	pending := map[string]topology.Node{}
	for _, n := range nodes {
		pending[n.ID] = n
	}
	for {
		for id, n := range pending {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.HTTPURL+"/readyz", nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				delete(pending, id)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			ids := make([]string, 0, len(pending))
			for id := range pending {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			return fmt.Errorf("nodes %v never returned 200 on /readyz: see their logs", ids)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// incarnation returns the node's incarnation from wscluster_node_info, or
// the process start time for a node that does not export it.
func incarnation(values map[string]float64) string {
	for key := range values {
		if !strings.HasPrefix(key, "wscluster_node_info{") {
			continue
		}
		_, rest, ok := strings.Cut(key, `incarnation="`)
		if inc, _, ok2 := strings.Cut(rest, `"`); ok && ok2 {
			return inc
		}
	}
	return "start-" + strconv.FormatFloat(values["process_start_time_seconds"], 'f', -1, 64)
}
