package checker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/history"
)

// readinessBase is a three-node run with the heal at 20 s and recovery at
// 21 s, so every node must return 200 from 21 s + 2 x 3 s + 2 s = 29 s.
func readinessBase() *phBuilder {
	b := &phBuilder{}
	b.phases(20*time.Second, 21*time.Second, 35*time.Second, 36*time.Second)
	return b
}

func alwaysReady(time.Duration) bool { return true }

// unreadyBetween returns 503 (false) from from to to and 200 (true)
// otherwise.
func unreadyBetween(from, to time.Duration) func(time.Duration) bool {
	return func(t time.Duration) bool { return t < from || t > to }
}

// isolateN1 adds a partition that cuts n1 from n2 and n3 from 5 s to 11 s.
func isolateN1(b *phBuilder) {
	b.fault("f1", "partition", []string{"n1", "n2", "n3"}, [][2]string{{"n1", "n2"}, {"n3", "n1"}}, 5*time.Second, 11*time.Second)
}

func TestReadinessValid(t *testing.T) {
	b := readinessBase()
	isolateN1(b)
	b.probes("n1", 0, 35*time.Second, unreadyBetween(ms(8200), ms(11300)))
	// n2 and n3 lose n1 but still hear each other.
	b.probes("n2", 0, 35*time.Second, alwaysReady)
	b.probes("n3", 0, 35*time.Second, alwaysReady)

	res := Readiness().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["cut-spans-ok"])
	assert.Equal(t, 0.0, res.Stats["recovery-to-ready-ms"], "every node returned 200 at the recovery start")
}

func TestReadinessReadyWhileCut(t *testing.T) {
	b := readinessBase()
	isolateN1(b)
	b.probes("n1", 0, 35*time.Second, unreadyBetween(ms(8200), ms(9500)))
	b.probes("n2", 0, 35*time.Second, alwaysReady)
	b.probes("n3", 0, 35*time.Second, alwaysReady)

	res := Readiness().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["ready-while-cut"], "one run of 200s from 9.75 s to 10 s")
	require.Len(t, res.Anomalies["ready-while-cut"], 1)
	a := res.Anomalies["ready-while-cut"][0]
	assert.Equal(t, "n1", a.Node)
	assert.Equal(t, int64(ms(9750)), a.Time)
	assert.Contains(t, a.Description, "returned 200 in 2 probes")
}

func TestReadinessNotReadyAfterHeal(t *testing.T) {
	b := readinessBase()
	b.probes("n1", 0, 35*time.Second, alwaysReady)
	b.probes("n2", 0, 35*time.Second, unreadyBetween(ms(20000), ms(30000)))
	b.probes("n3", 0, 35*time.Second, alwaysReady)
	b.fault("f1", "kill", []string{"n2"}, nil, 15*time.Second, 20*time.Second)

	res := Readiness().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["not-ready-after-heal"])
	assert.Equal(t, 0, res.Counts["unready-without-fault"])
	assert.InDelta(t, 9250, res.Stats["recovery-to-ready-ms"], 1, "n2's first 200 after 21 s came at 30.25 s")
}

func TestReadinessUnreadyWithoutFault(t *testing.T) {
	b := readinessBase()
	b.fault("f1", "kill", []string{"n2"}, nil, 5*time.Second, 7*time.Second)
	// n3 is unready right after the kill's stop, within the grace, and
	// again at 14 s, long after it.
	b.probes("n1", 0, 35*time.Second, alwaysReady)
	b.probes("n2", 0, 35*time.Second, alwaysReady)
	b.probes("n3", 0, 35*time.Second, func(t time.Duration) bool {
		return unreadyBetween(ms(7000), ms(9000))(t) && unreadyBetween(ms(14000), ms(14500))(t)
	})

	res := Readiness().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["unready-without-fault"])
	require.Len(t, res.Anomalies["unready-without-fault"], 1)
	assert.Equal(t, int64(14*time.Second), res.Anomalies["unready-without-fault"][0].Time)
}

func TestReadinessEngineNone(t *testing.T) {
	run := phRun
	run.Engine = "none"
	b := readinessBase()
	b.probes("n1", 0, 35*time.Second, alwaysReady)
	b.probes("n2", 0, 35*time.Second, alwaysReady)
	b.probes("n3", 0, 35*time.Second, alwaysReady)

	res := Readiness().Check(b.input(run))
	assert.Equal(t, Valid, res.Valid, res.Summary)

	b.probe("n3", ms(500), false)
	res = Readiness().Check(b.input(run))
	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["unready-without-fault"])
}

func TestReadinessRedisKill(t *testing.T) {
	run := phRun
	run.Engine = "redis"
	b := readinessBase()
	b.fault("f1", "redis-kill", []string{"redis"}, nil, 5*time.Second, 11*time.Second)
	unready := unreadyBetween(ms(5200), ms(11200))
	b.probes("n1", 0, 35*time.Second, unready)
	b.probes("n2", 0, 35*time.Second, unready)
	b.probes("n3", 0, 35*time.Second, unreadyBetween(ms(5200), ms(9250)))

	res := Readiness().Check(b.input(run))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["ready-while-cut"])
	require.Len(t, res.Anomalies["ready-while-cut"], 1)
	assert.Equal(t, "n3", res.Anomalies["ready-while-cut"][0].Node)
}

func TestReadinessRedisLinkCut(t *testing.T) {
	run := phRun
	run.Engine = "redis"
	b := readinessBase()
	b.fault("f1", "partition", []string{"n2", "redis"}, [][2]string{{"n2", "redis"}}, 5*time.Second, 11*time.Second)
	b.probes("n1", 0, 35*time.Second, alwaysReady)
	b.probes("n2", 0, 35*time.Second, alwaysReady)
	b.probes("n3", 0, 35*time.Second, alwaysReady)

	res := Readiness().Check(b.input(run))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	require.Len(t, res.Anomalies["ready-while-cut"], 1)
	assert.Equal(t, "n2", res.Anomalies["ready-while-cut"][0].Node)
}

func TestReadinessIsolationCombinesFaults(t *testing.T) {
	ws := []Window{
		{Fault: faultOf("kill", []string{"n3"}, nil), Start: int64(5 * time.Second), Stop: int64(15 * time.Second)},
		{Fault: faultOf("partition", []string{"n1", "n2"}, [][2]string{{"n1", "n2"}}), Start: int64(7 * time.Second), Stop: int64(13 * time.Second)},
	}
	nodes := []string{"n1", "n2", "n3"}

	assert.Equal(t, []readinessSpan{{int64(7 * time.Second), int64(13 * time.Second)}}, readinessIsolation("mesh", "n1", nodes, ws))
	assert.Empty(t, readinessIsolation("mesh", "n3", nodes, ws), "a dead node is not cut off")
	assert.Empty(t, readinessIsolation("redis", "n1", nodes, ws), "with redis, only the link to Redis counts")
	assert.Empty(t, readinessIsolation("mesh", "n1", []string{"n1"}, nil), "a node without peers is never cut off")
}

func faultOf(kind string, nodes []string, links [][2]string) history.Fault {
	return history.Fault{ID: kind, Kind: kind, Nodes: nodes, Links: links}
}

func TestReadinessUnknown(t *testing.T) {
	b := readinessBase()
	res := Readiness().Check(b.input(phRun))
	assert.Equal(t, Unknown, res.Valid, "no probes: %s", res.Summary)

	run := phRun
	run.Engine = "carrier-pigeon"
	b.probes("n1", 0, 35*time.Second, alwaysReady)
	res = Readiness().Check(b.input(run))
	assert.Equal(t, Unknown, res.Valid, res.Summary)
	assert.Contains(t, res.Summary, "carrier-pigeon")

	// n2 and n3 returned nothing to a probe after the heal.
	res = Readiness().Check(b.input(phRun))
	assert.Equal(t, Unknown, res.Valid, res.Summary)
	assert.Contains(t, res.Summary, "[n2 n3]")
}
