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
	assert.Equal(t, "no node died", res.Summary, "a pause shorter than the peer timeout is no death")
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

func TestGhostsOtherFaultExcludesNode(t *testing.T) {
	b := ghostBase()
	b.fault("f1", "kill", []string{"n1"}, nil, 5*time.Second, 11*time.Second)
	b.fault("f2", "latency", []string{"n2", "n3"}, nil, 9*time.Second, 12*time.Second)
	b.read(2, 1, "n2", "c", ms(10500), ms(10505), roster("m1@n1", "m2@n2"))
	b.read(2, 1, "n2", "c", ms(20000), ms(20005), roster("m1@n1", "m2@n2"))

	res := Ghosts().Check(b.input(phRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
	assert.Equal(t, 0, res.Counts["ghost"], "n2 was touched by another fault, so it observes nothing")
	assert.Equal(t, 0, res.Counts["unobserved"])
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
