package checker

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/history"
)

// linearBase is a run on n1's roster of "c": m1 (process 1) joins and
// leaves, m2 (process 2) joins and its connection is dropped, and process
// 3 reads. Rosters also list m9 on n2, which the node-local check ignores.
func linearBase() *phBuilder {
	b := &phBuilder{}
	b.phases(20*time.Second, 21*time.Second, 30*time.Second, 31*time.Second)
	b.connect(1, 1, "n1", ms(1000))
	b.connect(2, 1, "n1", ms(1000))
	b.connect(3, 1, "n1", ms(1000))
	b.join(1, 1, "n1", "c", "m1", ms(1000), ms(1010), history.Ok, roster("m1@n1", "m9@n2"))
	b.join(2, 1, "n1", "c", "m2", ms(2000), ms(2010), history.Ok, roster("m1@n1", "m2@n1", "m9@n2"))
	b.read(3, 1, "n1", "c", ms(3000), ms(3010), roster("m1@n1", "m2@n1", "m9@n2"))
	b.leave(1, 1, "n1", "c", ms(4000), ms(4010), history.Ok)
	b.drop(2, 1, "n1", ms(6000))
	// The drop has not taken effect at the first read, and has at the
	// second.
	b.read(3, 1, "n1", "c", ms(6002), ms(6003), roster("m2@n1", "m9@n2"))
	b.read(3, 1, "n1", "c", ms(7000), ms(7010), roster("m9@n2"))
	return b
}

func TestLinearValid(t *testing.T) {
	b := linearBase()
	b.read(3, 1, "n1", "c", ms(5000), ms(5010), roster("m2@n1"))

	res := Linearizable().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["groups"])
	assert.Equal(t, 1, res.Counts["partitions"])
	assert.Equal(t, 8, res.Counts["operations"], "2 joins, 1 leave, 1 close, 4 reads")
}

func TestLinearStaleRead(t *testing.T) {
	b := linearBase()
	// m1's leave completed at 4.01 s, yet a read invoked later lists it.
	b.read(3, 1, "n1", "c", ms(5000), ms(5010), roster("m1@n1", "m2@n1"))
	in := b.input(phRun)
	in.Dir = t.TempDir()

	res := Linearizable().Check(in)

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["not-linearizable"])
	require.Len(t, res.Anomalies["not-linearizable"], 1)
	a := res.Anomalies["not-linearizable"][0]
	assert.Equal(t, "n1", a.Node)
	assert.Contains(t, a.Description, "read -> [m1 m2]")
	require.Equal(t, []string{"linear-c-n1.html"}, res.Artifacts)
	page, err := os.ReadFile(filepath.Join(in.Dir, "linear-c-n1.html"))
	require.NoError(t, err)
	assert.Contains(t, string(page), "<html")
}

func TestLinearJoinResultWithoutItself(t *testing.T) {
	b := &phBuilder{}
	b.connect(1, 1, "n1", ms(1000))
	b.join(1, 1, "n1", "c", "m1", ms(1000), ms(1010), history.Ok, roster("m9@n2"))

	res := Linearizable().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Empty(t, res.Artifacts, "no run folder to write into")
	require.Len(t, res.Anomalies["not-linearizable"], 1)
	assert.Contains(t, res.Anomalies["not-linearizable"][0].Description, "no run folder")
}

func TestLinearDropTakesEffectLate(t *testing.T) {
	b := linearBase()
	// A read long after the drop still lists m2, after one that did not.
	b.read(3, 1, "n1", "c", ms(8000), ms(8010), roster("m2@n1"))

	res := Linearizable().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
}

func TestLinearLostConnection(t *testing.T) {
	b := &phBuilder{}
	b.connect(1, 1, "n1", ms(1000))
	b.connect(3, 1, "n1", ms(1000))
	b.join(1, 1, "n1", "c", "m1", ms(1000), ms(1010), history.Ok, roster("m1@n1"))
	b.read(1, 1, "n1", "c", ms(2000), ms(2010), roster("m1@n1"))
	// The server may close the connection right after its last response,
	// before the client notices, so a read in between may miss m1.
	b.read(3, 1, "n1", "c", ms(2500), ms(2510), nil)
	b.disconnect(1, 1, "n1", ms(3000))

	res := Linearizable().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
}

func TestLinearUnknownJoin(t *testing.T) {
	for name, later := range map[string][]history.Member{
		"took effect":    roster("m1@n1"),
		"no effect seen": nil,
	} {
		t.Run(name, func(t *testing.T) {
			b := &phBuilder{}
			b.connect(1, 1, "n1", ms(1000))
			b.connect(3, 1, "n1", ms(1000))
			b.join(1, 1, "n1", "c", "m1", ms(1000), ms(3000), history.Info, nil)
			b.read(3, 1, "n1", "c", ms(4000), ms(4010), later)

			res := Linearizable().Check(b.input(phRun))

			assert.Equal(t, Valid, res.Valid, res.Summary)
		})
	}
}

func TestLinearIncarnations(t *testing.T) {
	b := linearBase()
	b.read(3, 1, "n1", "c", ms(5000), ms(5010), roster("m2@n1"))
	// m5 joins and no end of its connection is recorded, but n1 is killed
	// and restarted, and a new connection reads the empty roster of the new
	// incarnation.
	b.connect(5, 1, "n1", ms(8000))
	b.join(5, 1, "n1", "c", "m5", ms(8100), ms(8110), history.Ok, roster("m5@n1"))
	b.fault("f1", "kill", []string{"n1"}, nil, 9*time.Second, 10*time.Second)
	b.connect(6, 1, "n1", ms(11000))
	b.read(6, 1, "n1", "c", ms(11100), ms(11110), roster("m9@n2"))

	res := Linearizable().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 2, res.Counts["partitions"])
}

func TestLinearSameMemberTwoConnections(t *testing.T) {
	// An observer reconnects to the same node and joins with the same id
	// while its old connection is still being closed.
	b := &phBuilder{}
	b.connect(1, 1, "n1", ms(1000))
	b.connect(3, 1, "n1", ms(1000))
	b.join(1, 1, "n1", "c", "obs", ms(1000), ms(1010), history.Ok, roster("obs@n1"))
	b.drop(1, 1, "n1", ms(2000))
	b.connect(1, 2, "n1", ms(2100))
	two := []history.Member{{Member: "obs", Connections: []history.Connection{{Node: "n1", Conn: "a"}, {Node: "n1", Conn: "b"}}}}
	b.join(1, 2, "n1", "c", "obs", ms(2200), ms(2210), history.Ok, two)
	b.read(3, 1, "n1", "c", ms(3000), ms(3010), roster("obs@n1"))

	res := Linearizable().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
}

func TestLinearNoOperations(t *testing.T) {
	b := &phBuilder{}
	b.phase(history.PhaseSetup, 0)

	res := Linearizable().Check(b.input(phRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
}

func TestLinearTooLarge(t *testing.T) {
	b := &phBuilder{}
	b.connect(3, 1, "n1", 0)
	for i := range linearMaxOps + 1 {
		at := ms(10 * (i + 1))
		b.read(3, 1, "n1", "c", at, at+ms(1), nil)
	}

	res := Linearizable().Check(b.input(phRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["too-large"])
	assert.Contains(t, res.Summary, "more than the 2000 checked")
}

func TestLinearFileName(t *testing.T) {
	assert.Equal(t, "linear-room_1_-n2.html", linearFileName(presenceRosterKey{node: "n2", channel: "room/1?"}))
}
