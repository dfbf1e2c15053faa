package checker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/history"
)

// ghostBase is a run where m1 joined "c" on n1, and observers joined on n2
// (process 2, member m2) and n3 (process 3, member m3). The limit is
// peer timeout 3 s + heartbeat 1 s + 1 s = 5 s.
func ghostBase() *phBuilder {
	b := &phBuilder{}
	b.phases(30*time.Second, 31*time.Second, 40*time.Second, 41*time.Second)
	b.connect(1, 1, "n1", ms(1100))
	b.join(1, 1, "n1", "c", "m1", ms(1200), ms(1210), history.Ok, roster("m1@n1"))
	b.connect(2, 1, "n2", ms(1100))
	b.join(2, 1, "n2", "c", "m2", ms(1300), ms(1310), history.Ok, roster("m1@n1", "m2@n2"))
	b.connect(3, 1, "n3", ms(1100))
	b.join(3, 1, "n3", "c", "m3", ms(1400), ms(1410), history.Ok, roster("m1@n1", "m2@n2", "m3@n3"))
	return b
}

func TestGhostsNoDeath(t *testing.T) {
	b := ghostBase()
	b.fault("f1", "pause", []string{"n1"}, nil, 5*time.Second, 7*time.Second)

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, "no node died; no silent client", res.Summary, "a pause shorter than the peer timeout is no death")
	assert.Equal(t, 0, res.Counts["deaths"])
}

func TestGhostsKillPurged(t *testing.T) {
	b := ghostBase()
	b.fault("f1", "kill", []string{"n1"}, nil, 5*time.Second, 11*time.Second)
	b.disconnect(1, 1, "n1", ms(5001))
	b.event(2, 1, "n2", history.FPresenceLeave, "c", "m1", ms(8200))
	b.read(3, 1, "n3", "c", ms(6000), ms(6005), roster("m1@n1", "m2@n2", "m3@n3"))
	b.read(3, 1, "n3", "c", ms(8500), ms(8505), roster("m2@n2", "m3@n3"))

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["deaths"])
	assert.Equal(t, 1, res.Counts["victims"])
	assert.Equal(t, 2, res.Counts["observations"])
	assert.InDelta(t, 3505, res.Stats["ghost-purge-p100-ms"], 1)
	assert.InDelta(t, 3200, res.Stats["ghost-purge-p50-ms"], 1)
}

func TestGhostsSlowPurge(t *testing.T) {
	b := ghostBase()
	b.fault("f1", "kill", []string{"n1"}, nil, 5*time.Second, 11*time.Second)
	b.event(2, 1, "n2", history.FPresenceLeave, "c", "m1", ms(8200))
	// n3 still lists m1 in a read invoked 5.5 s after the kill.
	b.read(3, 1, "n3", "c", ms(10500), ms(10505), roster("m1@n1", "m2@n2", "m3@n3"))
	b.read(3, 1, "n3", "c", ms(12000), ms(12005), roster("m2@n2", "m3@n3"))

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["slow-purge"])
	assert.Equal(t, 0, res.Counts["ghost"])
	require.Len(t, res.Anomalies["slow-purge"], 1)
	assert.Equal(t, "n3", res.Anomalies["slow-purge"][0].Node)
}

func TestGhostsSlowLeaveEvent(t *testing.T) {
	b := ghostBase()
	b.fault("f1", "kill", []string{"n1"}, nil, 5*time.Second, 15*time.Second)
	b.event(2, 1, "n2", history.FPresenceLeave, "c", "m1", ms(10500))

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["slow-purge"], "a presence.leave 5.5 s after the kill is late")
	assert.Equal(t, 1, res.Counts["unobserved"], "n3 neither read nor received anything")
}

func TestGhostsGhost(t *testing.T) {
	b := ghostBase()
	b.fault("f1", "kill", []string{"n1"}, nil, 5*time.Second, 11*time.Second)
	b.event(3, 1, "n3", history.FPresenceLeave, "c", "m1", ms(8200))
	for at := 6 * time.Second; at < 40*time.Second; at += 2 * time.Second {
		b.read(2, 1, "n2", "c", at, at+ms(5), roster("m1@n1", "m2@n2", "m3@n3"))
	}

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["ghost"])
	require.Len(t, res.Anomalies["ghost"], 1)
	assert.Equal(t, "n2", res.Anomalies["ghost"][0].Node)
	assert.Contains(t, res.Anomalies["ghost"][0].Description, "never left")
}

func TestGhostsPauseComesBack(t *testing.T) {
	b := ghostBase()
	b.fault("f1", "pause", []string{"n1"}, nil, 5*time.Second, 11*time.Second)
	b.event(2, 1, "n2", history.FPresenceLeave, "c", "m1", ms(8300))
	b.read(3, 1, "n3", "c", ms(8400), ms(8405), roster("m2@n2", "m3@n3"))
	// After the resume, m1's connection is still open, so m1 is back.
	b.read(3, 1, "n3", "c", ms(20000), ms(20005), roster("m1@n1", "m2@n2", "m3@n3"))

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 2, res.Counts["observations"])
}

func TestGhostsPauseNeverPurged(t *testing.T) {
	b := ghostBase()
	b.fault("f1", "pause", []string{"n1"}, nil, 5*time.Second, 14*time.Second)
	b.event(3, 1, "n3", history.FPresenceLeave, "c", "m1", ms(8300))
	b.read(2, 1, "n2", "c", ms(12000), ms(12005), roster("m1@n1", "m2@n2", "m3@n3"))
	b.read(2, 1, "n2", "c", ms(20000), ms(20005), roster("m1@n1", "m2@n2", "m3@n3"))

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["ghost"], "listed 7 s into a 9 s pause")
}

func TestGhostsNoObserver(t *testing.T) {
	b := ghostBase()
	b.fault("f1", "kill", []string{"n1"}, nil, 5*time.Second, 11*time.Second)

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
	assert.Equal(t, 2, res.Counts["unobserved"])
}

func TestGhostsLinkFaultDoesNotExcuse(t *testing.T) {
	b := ghostBase()
	b.fault("f1", "kill", []string{"n1"}, nil, 5*time.Second, 11*time.Second)
	b.fault("f2", "latency", []string{"n2", "n3"}, nil, 9*time.Second, 12*time.Second)
	b.read(2, 1, "n2", "c", ms(10500), ms(10505), roster("m1@n1", "m2@n2"))
	b.read(2, 1, "n2", "c", ms(20000), ms(20005), roster("m1@n1", "m2@n2"))

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["ghost"], "a slow link does not stop n2 from declaring the dead n1 down")
}

func TestGhostsPauseExcludesNode(t *testing.T) {
	b := ghostBase()
	b.fault("f1", "kill", []string{"n1"}, nil, 5*time.Second, 11*time.Second)
	b.fault("f2", "pause", []string{"n2"}, nil, 9*time.Second, 12*time.Second)
	b.read(2, 1, "n2", "c", ms(10500), ms(10505), roster("m1@n1", "m2@n2"))
	b.read(2, 1, "n2", "c", ms(20000), ms(20005), roster("m1@n1", "m2@n2"))

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
	assert.Equal(t, 0, res.Counts["ghost"], "n2 was paused too, so it observes nothing")
}

func TestGhostsRejoinEndsObservation(t *testing.T) {
	b := ghostBase()
	b.fault("f1", "kill", []string{"n1"}, nil, 5*time.Second, 8*time.Second)
	b.disconnect(1, 1, "n1", ms(5001))
	b.event(2, 1, "n2", history.FPresenceLeave, "c", "m1", ms(7900))
	// Process 1 reconnects to the restarted n1 and joins with the same
	// member id, so n3 rightly lists m1 on n1 again.
	b.connect(1, 2, "n1", ms(9000))
	b.join(1, 2, "n1", "c", "m1", ms(9100), ms(9110), history.Ok, roster("m1@n1", "m2@n2", "m3@n3"))
	b.read(3, 1, "n3", "c", ms(12000), ms(12005), roster("m1@n1", "m2@n2", "m3@n3"))

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 0, res.Counts["ghost"])
	assert.Equal(t, 1, res.Counts["unobserved"])
}

func TestGhostsVictimsOnlyAtFaultStart(t *testing.T) {
	b := ghostBase()
	// m1 left before the kill, so nothing of n1 is left to purge.
	b.leave(1, 1, "n1", "c", ms(4000), ms(4010), history.Ok)
	b.fault("f1", "kill", []string{"n1"}, nil, 5*time.Second, 11*time.Second)

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["deaths"])
	assert.Equal(t, 0, res.Counts["victims"])
}

// silentRun has a ping interval of 2 s, so a silent client's members must
// be gone within 2 x 2 s + 1 s = 5 s.
var silentRun = Run{
	Engine:            "mesh",
	Nodes:             []string{"n1", "n2", "n3"},
	HeartbeatInterval: time.Second,
	PeerTimeout:       3 * time.Second,
	PingInterval:      2 * time.Second,
}

// silentBase is ghostBase where process 1's connection on n1, holding m1,
// goes silent at 5 s (its FDrop ok), and process 4 observes on n1.
func silentBase() *phBuilder {
	b := ghostBase()
	b.connect(4, 1, "n1", ms(1100))
	b.join(4, 1, "n1", "c", "m4", ms(1500), ms(1510), history.Ok, roster("m1@n1", "m2@n2", "m3@n3", "m4@n1"))
	b.add(history.Op{Type: history.Invoke, F: history.FDrop, Process: 1, Epoch: 1, Node: "n1", Time: int64(ms(4999))})
	b.add(history.Op{Type: history.Ok, F: history.FDrop, Process: 1, Epoch: 1, Node: "n1", Time: int64(ms(5000)), Error: "silent"})
	return b
}

func TestGhostsSilentPurged(t *testing.T) {
	b := silentBase()
	b.read(4, 1, "n1", "c", ms(6000), ms(6005), roster("m1@n1", "m2@n2", "m3@n3", "m4@n1"))
	b.read(4, 1, "n1", "c", ms(9000), ms(9005), roster("m2@n2", "m3@n3", "m4@n1"))
	b.event(2, 1, "n2", history.FPresenceLeave, "c", "m1", ms(8200))
	b.read(3, 1, "n3", "c", ms(7500), ms(7505), roster("m1@n1", "m2@n2", "m3@n3", "m4@n1"))
	b.read(3, 1, "n3", "c", ms(8500), ms(8505), roster("m2@n2", "m3@n3", "m4@n1"))

	res := Ghosts().Check(b.input(silentRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["silent-clients"])
	assert.Equal(t, 1, res.Counts["silent-members"])
	assert.Equal(t, 3, res.Counts["silent-observations"], "n1, n2 and n3")
	assert.Equal(t, 0, res.Counts["deaths"])
	assert.InDelta(t, 4005, res.Stats["silent-purge-p100-ms"], 1)
	assert.InDelta(t, 3505, res.Stats["silent-purge-p50-ms"], 1)
	assert.Contains(t, res.Summary, "all purged within 5s")
}

func TestGhostsSilentGhost(t *testing.T) {
	b := silentBase()
	b.event(3, 1, "n3", history.FPresenceLeave, "c", "m1", ms(8200))
	// n1 never closes the silent connection, so its own roster keeps m1.
	for at := 6 * time.Second; at < 40*time.Second; at += 2 * time.Second {
		b.read(4, 1, "n1", "c", at, at+ms(5), roster("m1@n1", "m2@n2", "m3@n3", "m4@n1"))
	}

	res := Ghosts().Check(b.input(silentRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["silent-ghost"])
	assert.Equal(t, 0, res.Counts["slow-silent-purge"])
	assert.Equal(t, 1, res.Counts["silent-unobserved"], "n2 neither read nor received anything")
	require.Len(t, res.Anomalies["silent-ghost"], 1)
	a := res.Anomalies["silent-ghost"][0]
	assert.Equal(t, "n1", a.Node)
	assert.Contains(t, a.Description, "went silent")
	assert.Contains(t, a.Description, "never left")
	assert.Contains(t, res.Summary, "1 silent ghosts")
}

func TestGhostsSilentSlowPurge(t *testing.T) {
	b := silentBase()
	// n3 still lists m1 in a read invoked 5.5 s after the silence, and n2
	// hears the leave 5.6 s after it.
	b.read(3, 1, "n3", "c", ms(10500), ms(10505), roster("m1@n1", "m2@n2", "m3@n3", "m4@n1"))
	b.read(3, 1, "n3", "c", ms(12000), ms(12005), roster("m2@n2", "m3@n3", "m4@n1"))
	b.event(2, 1, "n2", history.FPresenceLeave, "c", "m1", ms(10600))
	b.read(4, 1, "n1", "c", ms(8000), ms(8005), roster("m2@n2", "m3@n3", "m4@n1"))

	res := Ghosts().Check(b.input(silentRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 2, res.Counts["slow-silent-purge"])
	assert.Equal(t, 0, res.Counts["silent-ghost"])
	nodes := []string{}
	for _, a := range res.Anomalies["slow-silent-purge"] {
		nodes = append(nodes, a.Node)
	}
	assert.ElementsMatch(t, []string{"n2", "n3"}, nodes)
}

func TestGhostsSilentFaultExcludesNode(t *testing.T) {
	b := silentBase()
	// A partition of n1 from n2 keeps n2 from hearing of m1's leave, so
	// n2 observes nothing. n1 purges its own client whatever its links do.
	b.fault("f1", "partition", []string{"n1", "n2"}, [][2]string{{"n1", "n2"}}, 4*time.Second, 12*time.Second)
	for at := 6 * time.Second; at < 12*time.Second; at += time.Second {
		b.read(2, 1, "n2", "c", at, at+ms(5), roster("m1@n1", "m2@n2", "m3@n3", "m4@n1"))
	}
	b.read(4, 1, "n1", "c", ms(11000), ms(11005), roster("m1@n1", "m2@n2", "m3@n3", "m4@n1"))
	b.read(4, 1, "n1", "c", ms(13000), ms(13005), roster("m2@n2", "m3@n3", "m4@n1"))

	res := Ghosts().Check(b.input(silentRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 2, res.Counts["silent-excluded"], "n2 and n3, because the partition touched n1")
	require.Len(t, res.Anomalies["slow-silent-purge"], 1)
	assert.Equal(t, "n1", res.Anomalies["slow-silent-purge"][0].Node, "a partition does not excuse n1's own roster")
}

func TestGhostsSilentKillExcludesAll(t *testing.T) {
	b := silentBase()
	b.fault("f1", "kill", []string{"n1"}, nil, 6*time.Second, 8*time.Second)
	b.read(2, 1, "n2", "c", ms(11000), ms(11005), roster("m1@n1", "m2@n2", "m3@n3"))

	res := Ghosts().Check(b.input(silentRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 3, res.Counts["silent-excluded"])
	assert.Equal(t, 0, res.Counts["silent-ghost"])
	assert.Contains(t, res.Summary, "every node disturbed by a fault")
}

func TestGhostsSilentUnobserved(t *testing.T) {
	res := Ghosts().Check(silentBase().input(silentRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
	assert.Equal(t, 3, res.Counts["silent-unobserved"])
}

func TestGhostsSilentLeftBefore(t *testing.T) {
	b := silentBase()
	// m1 left before the silence, so the silent connection held nothing.
	b.leave(1, 1, "n1", "c", ms(4000), ms(4010), history.Ok)

	res := Ghosts().Check(b.input(silentRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["silent-clients"])
	assert.Equal(t, 0, res.Counts["silent-members"])
}

func TestGhostsPlainDropIsNotSilent(t *testing.T) {
	b := ghostBase()
	b.drop(1, 1, "n1", 5*time.Second)
	for at := 6 * time.Second; at < 20*time.Second; at += 2 * time.Second {
		b.read(2, 1, "n2", "c", at, at+ms(5), roster("m1@n1", "m2@n2", "m3@n3"))
	}

	res := Ghosts().Check(b.input(silentRun))

	assert.Equal(t, 0, res.Counts["silent-clients"], "a drop without Error silent")
	assert.Equal(t, Valid, res.Valid, res.Summary)
}
