package checker

import (
	"bufio"
	"cmp"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/metrics"
)

// scrape records a metrics probe of node: the publish envelopes it
// received from each peer, its replayed and dropped duplicate counters and
// its process start time.
func (h *pubsubHistory) scrape(node string, start float64, received map[string]float64, replayed, duplicates float64) {
	m := map[string]float64{
		loopsStartTimeMetric:  start,
		loopsReplayedMetric:   replayed,
		loopsDuplicatesMetric: duplicates,
	}
	for peer, n := range received {
		m[fmt.Sprintf(`%s{kind="publish",peer=%q}`, loopsReceivedMetric, peer)] = n
		// Other kinds are not publishes and must not count.
		m[fmt.Sprintf(`%s{kind="heartbeat",peer=%q}`, loopsReceivedMetric, peer)] = 1000
	}
	h.tick(2000)
	h.add(history.Op{Type: history.Probe, F: history.FMetrics, Process: history.ProcessProbe, Node: node, Metrics: m})
}

// publishes records n publishes of process 0 that complete with
// outcome.
func (h *pubsubHistory) publishes(n int, outcome history.Type) {
	for s := int64(1); s <= int64(n); s++ {
		h.publish(0, 1, "n1", pubsubChannel, s, outcome)
	}
}

// evenScrapes records one scrape per node of three, each node having
// received perPeer publish envelopes from each of its two peers and
// replayed replayedEach.
func (h *pubsubHistory) evenScrapes(perPeer, replayedEach float64) {
	for _, node := range pubsubNodes {
		received := map[string]float64{}
		for _, peer := range pubsubNodes {
			if peer != node {
				received[peer] = perPeer
			}
		}
		h.scrape(node, 1.7e9, received, replayedEach, 0)
	}
}

func checkLoops(t *testing.T, h *pubsubHistory, engine string) Result {
	t.Helper()
	res := Loops().Check(Input{Run: pubsubRun(engine), History: h.ops})
	t.Logf("%s: %s %v %v", res.Valid, res.Summary, res.Counts, res.Stats)
	return res
}

func TestLoopsWithinBound(t *testing.T) {
	// 150 publishes on 3 nodes may cross 300 links; the nodes received
	// 6 x 50 = 300 envelopes.
	h := &pubsubHistory{}
	h.publishes(150, history.Ok)
	h.evenScrapes(50, 0)
	res := checkLoops(t, h, "mesh")
	if res.Valid != Valid {
		t.Errorf("verdict = %s, want valid", res.Valid)
	}
	if got := res.Stats["backplane-messages-per-publish"]; got != 2 {
		t.Errorf("backplane-messages-per-publish = %v, want 2", got)
	}
	if got := res.Stats["bound-ratio"]; got != 1 {
		t.Errorf("bound-ratio = %v, want 1", got)
	}
	pubsubExpectCounts(t, res, map[string]int{"bound": 300, "publish-envelopes-received": 300})
}

func TestLoopsAboveBound(t *testing.T) {
	// Every publish crossed every link twice.
	h := &pubsubHistory{}
	h.publishes(150, history.Ok)
	h.evenScrapes(100, 0)
	res := checkLoops(t, h, "redis")
	if res.Valid != Invalid {
		t.Errorf("verdict = %s, want invalid", res.Valid)
	}
	if got := len(res.Anomalies["loop"]); got != 1 {
		t.Errorf("loop examples = %d, want 1", got)
	}
}

func TestLoopsReplaysAndSlack(t *testing.T) {
	// Bound 300, limit 300 x 1.05 + 50 = 365 envelopes beyond replays.
	cases := []struct {
		name     string
		perPeer  float64
		replayed float64
		want     Verdict
	}{
		{"replays make room", 100, 80, Valid}, // 600 - 3 x 80 = 360
		{"too few replays", 100, 70, Invalid}, // 600 - 3 x 70 = 390
		{"just inside slack", 60, 0, Valid},   // 360
		{"just above slack", 61, 0, Invalid},  // 366
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &pubsubHistory{}
			h.publishes(150, history.Ok)
			h.evenScrapes(tc.perPeer, tc.replayed)
			if res := checkLoops(t, h, "mesh"); res.Valid != tc.want {
				t.Errorf("verdict = %s, want %s", res.Valid, tc.want)
			}
		})
	}
}

func TestLoopsUnknownPublishesCountFailedDoNot(t *testing.T) {
	// 100 ok, 50 unknown and 100 failed: P is 150, so 300 envelopes fit
	// the bound exactly.
	h := &pubsubHistory{}
	h.publishes(100, history.Ok)
	h.publishes(50, history.Info)
	h.publishes(100, history.Fail)
	h.evenScrapes(50, 0)
	res := checkLoops(t, h, "mesh")
	pubsubExpect(t, res, Valid, map[string]int{"publishes": 150})
	if got := res.Stats["bound-ratio"]; got != 1 {
		t.Errorf("bound-ratio = %v, want 1", got)
	}
}

func TestLoopsIncarnations(t *testing.T) {
	cases := []struct {
		name string
		// second describes n1's scrape after one with 40 envelopes from
		// n2 at start time 100.
		start    float64
		received float64
		inc      string
		want     int // publish envelopes summed over incarnations
		noIDs    bool
	}{
		{"same process", 100, 70, "", 70, false},
		{"start time drift same id", 200, 70, "", 70, false},
		{"new start time without ids", 200, 70, "", 110, true},
		{"counter went down", 100, 10, "", 50, false},
		{"new incarnation id", 100, 70, "i2", 110, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &pubsubHistory{}
			h.publishes(100, history.Ok)
			h.scrape("n1", 100, map[string]float64{"n2": 40}, 0, 0)
			h.ops[len(h.ops)-1].Incarnation = "i1"
			h.scrape("n1", tc.start, map[string]float64{"n2": tc.received}, 0, 0)
			h.ops[len(h.ops)-1].Incarnation = cmp.Or(tc.inc, "i1")
			if tc.noIDs {
				h.ops[len(h.ops)-1].Incarnation = ""
				h.ops[len(h.ops)-2].Incarnation = ""
			}
			res := checkLoops(t, h, "mesh")
			if got := res.Counts["publish-envelopes-received"]; got != tc.want {
				t.Errorf("publish-envelopes-received = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestLoopsPeerSeriesRecreated(t *testing.T) {
	h := &pubsubHistory{}
	h.publishes(100, history.Ok)

	// The n2 series is deleted while n2 is down and starts again at zero,
	// while the n3 series keeps counting in the same process.
	h.scrape("n1", 100, map[string]float64{"n2": 40, "n3": 40}, 0, 0)
	h.scrape("n1", 100, map[string]float64{"n3": 60}, 0, 0)
	h.scrape("n1", 100, map[string]float64{"n2": 15, "n3": 70}, 0, 0)
	res := checkLoops(t, h, "mesh")
	if got := res.Counts["publish-envelopes-received"]; got != 125 {
		t.Errorf("publish-envelopes-received = %d, want 125 (40 + 15 from n2, 70 from n3)", got)
	}
	if got := res.Counts["incarnations"]; got != 1 {
		t.Errorf("incarnations = %d, want 1", got)
	}
}

func TestLoopsNoBackplane(t *testing.T) {
	for _, tc := range []struct {
		name   string
		engine string
		nodes  []string
	}{{"engine none", "none", pubsubNodes}, {"one node", "mesh", []string{"n1"}}} {
		t.Run(tc.name, func(t *testing.T) {
			h := &pubsubHistory{}
			h.publishes(10, history.Ok)
			h.scrape("n1", 1, nil, 0, 0)
			run := pubsubRun(tc.engine)
			run.Nodes = tc.nodes
			res := Loops().Check(Input{Run: run, History: h.ops})
			pubsubExpect(t, res, Valid, map[string]int{"bound": 0})
			if !strings.Contains(res.Summary, "no backplane traffic expected") {
				t.Errorf("summary %q does not say no traffic was expected", res.Summary)
			}
		})
	}
}

func TestLoopsVerdictUnknown(t *testing.T) {
	noScrape := &pubsubHistory{}
	noScrape.publishes(10, history.Ok)

	noPublish := &pubsubHistory{}
	noPublish.evenScrapes(0, 0)

	allFailed := &pubsubHistory{}
	allFailed.publishes(10, history.Fail)
	allFailed.evenScrapes(0, 0)

	for name, h := range map[string]*pubsubHistory{
		"no scrape": noScrape, "no publish": noPublish, "all publishes failed": allFailed,
	} {
		t.Run(name, func(t *testing.T) {
			if res := checkLoops(t, h, "mesh"); res.Valid != Unknown {
				t.Errorf("verdict = %s, want unknown", res.Valid)
			}
		})
	}
}

func TestLoopsLabelValue(t *testing.T) {
	cases := []struct {
		key, label, want string
		ok               bool
	}{
		{`m{kind="publish",peer="n2"}`, "kind", "publish", true},
		{`m{peer="n2",kind="publish"}`, "kind", "publish", true},
		{`m{peer="n2", kind="publish"}`, "kind", "publish", true},
		{`m{peer="a\"b,kind=\"x",kind="publish"}`, "kind", "publish", true},
		{`m{peer="a\"b,kind=\"x",kind="publish"}`, "peer", `a"b,kind="x`, true},
		{`m{peer="n2"}`, "kind", "", false},
		{`m`, "kind", "", false},
		{`m{kind=publish}`, "kind", "", false},
	}
	for _, tc := range cases {
		got, ok := loopsLabelValue(tc.key, tc.label)
		if got != tc.want || ok != tc.ok {
			t.Errorf("loopsLabelValue(%s, %s) = %q, %t; want %q, %t", tc.key, tc.label, got, ok, tc.want, tc.ok)
		}
	}
}

// pubsubScrapeRegistry reads the real /metrics text of a node's registry
// over HTTP and keys each sample by its name and labels, as the suite's
// probe records them.
func pubsubScrapeRegistry(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	samples := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return samples
}

func TestLoopsReadsRealMetricsText(t *testing.T) {
	// Two nodes' real registries: n1 received 7 publishes and 3 heartbeats
	// from n2, and n2 received 5 publishes from n1 and replayed 2.
	n1, n2 := metrics.New(), metrics.New()
	n1.PeerEnvelopesReceived.WithLabelValues("n2", "publish").Add(7)
	n1.PeerEnvelopesReceived.WithLabelValues("n2", "heartbeat").Add(3)
	n2.PeerEnvelopesReceived.WithLabelValues("n1", "publish").Add(5)
	n2.MessagesReplayed.Add(2)
	n2.DuplicatesDropped.Add(1)

	h := &pubsubHistory{}
	h.publishes(6, history.Ok)
	for node, m := range map[string]*metrics.Metrics{"n1": n1, "n2": n2} {
		samples := pubsubScrapeRegistry(t, m)
		if _, ok := samples[loopsStartTimeMetric]; !ok {
			t.Errorf("%s: no %s in the scrape", node, loopsStartTimeMetric)
		}
		h.add(history.Op{Type: history.Probe, F: history.FMetrics, Process: history.ProcessProbe, Node: node, Metrics: samples})
	}

	run := pubsubRun("mesh")
	run.Nodes = []string{"n1", "n2"}
	res := Loops().Check(Input{Run: run, History: h.ops})
	t.Logf("%s: %s %v", res.Valid, res.Summary, res.Counts)
	pubsubExpectCounts(t, res, map[string]int{"publish-envelopes-received": 12, "messages-replayed": 2, "duplicates-dropped": 1})
	if res.Valid != Valid {
		t.Errorf("verdict = %s, want valid (10 beyond replays, bound 6 plus slack)", res.Valid)
	}
}
