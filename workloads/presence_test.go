package workloads

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

func TestPresenceRecordsJoinsAndEvents(t *testing.T) {
	nodes := startMesh(t, 2)
	rec := history.NewRecorder(nil)
	w, err := New("presence", Config{Nodes: topologyNodes(nodes), Recorder: rec, Seed: 11, PingInterval: testPingInterval})
	require.NoError(t, err)

	runPhases(t, w, 3*time.Second, 1500*time.Millisecond)
	ops := rec.Ops()
	requireWellFormed(t, ops)

	// Processes 0 and 4 observe (one per node), 1-3 and 5-7 churn, and the
	// final readers are 8 and 9.
	observers := map[int]string{0: "obs-n1-p0.1", 4: "obs-n2-p4.1"}
	churnMember := regexp.MustCompile(`^m([0-9]+)\.([0-9]+)\.[0-9]+$`)
	joins := selectOps(ops, is(history.Ok, history.FJoin))
	observerJoins := 0
	for _, op := range joins {
		if member, ok := observers[op.Process]; ok {
			assert.Equal(t, member, op.Member)
			observerJoins++
		} else {
			m := churnMember.FindStringSubmatch(op.Member)
			require.NotNil(t, m, "member id %q", op.Member)
			assert.Equal(t, fmt.Sprint(op.Process), m[1], "process in member id %q", op.Member)
			assert.Equal(t, fmt.Sprint(op.Epoch), m[2], "epoch in member id %q", op.Member)
		}
		assert.True(t, rosterHas(op.Members, op.Member, op.Node), "join result at index %d lists the member on %s", op.Index, op.Node)
	}
	assert.Equal(t, len(observers)*DefaultPresenceChannels, observerJoins)
	assert.Greater(t, len(joins)-observerJoins, 10, "churn joins")

	assert.NotEmpty(t, selectOps(ops, is(history.Ok, history.FLeave)))
	joinEvents := selectOps(ops, is(history.Event, history.FPresenceJoin))
	require.NotEmpty(t, joinEvents)
	for _, op := range joinEvents {
		assert.NotEmpty(t, op.EventNode, "presence.join event at index %d", op.Index)
	}
	assert.NotEmpty(t, selectOps(ops, is(history.Event, history.FPresenceLeave)))

	reads := selectOps(ops, func(op history.Op) bool {
		_, observer := observers[op.Process]
		return observer && op.Type == history.Ok && op.F == history.FMembers
	})
	assert.Greater(t, len(reads), 20, "observer reads every 250 ms on two nodes for 4.5 s")

	// The final reads of both nodes list exactly the members that are
	// still joined according to the history.
	final := selectOps(ops, func(op history.Op) bool {
		return op.Process >= 8 && op.Type == history.Ok && op.F == history.FMembers
	})
	require.Len(t, final, len(nodes)*DefaultPresenceChannels)
	truth := presenceTruth(ops)
	for _, op := range final {
		assert.Contains(t, []string{"n1", "n2"}, op.Node)
		assert.Equal(t, truth[op.Channel], memberIDs(op.Members), "final roster of %s on %s", op.Channel, op.Node)
	}
}

// rosterHas reports whether roster lists member with a connection on node.
func rosterHas(roster []history.Member, member, node string) bool {
	for _, m := range roster {
		if m.Member != member {
			continue
		}
		for _, c := range m.Connections {
			if c.Node == node {
				return true
			}
		}
	}
	return false
}

// memberIDs returns the sorted member ids of a roster.
func memberIDs(roster []history.Member) []string {
	ids := []string{}
	for _, m := range roster {
		ids = append(ids, m.Member)
	}
	slices.Sort(ids)
	return ids
}

// presenceTruth replays joins, leaves, drops and disconnects, and returns
// the sorted member ids still joined per channel at the end.
func presenceTruth(ops []history.Op) map[string][]string {
	type connection struct{ process, epoch int }
	joined := map[connection]map[string]string{} // channel -> member
	for _, op := range ops {
		c := connection{op.Process, op.Epoch}
		switch {
		case op.Type == history.Ok && op.F == history.FJoin:
			if joined[c] == nil {
				joined[c] = map[string]string{}
			}
			joined[c][op.Channel] = op.Member
		case op.Type == history.Ok && op.F == history.FLeave:
			delete(joined[c], op.Channel)
		case op.Type == history.Ok && op.F == history.FDrop, op.Type == history.Event && op.F == history.FDisconnect:
			delete(joined, c)
		}
	}

	truth := map[string][]string{}
	for _, channels := range joined {
		for channel, member := range channels {
			truth[channel] = append(truth[channel], member)
		}
	}
	for channel := range truth {
		slices.Sort(truth[channel])
	}
	return truth
}

// silentSeed makes churn processes 1 and 2 (on n1) end their first round
// silent, in a presence workload on two nodes with the default workers.
const silentSeed = 22

func TestDrawSilentOnlyWhenOn(t *testing.T) {
	nodes := []topology.Node{{ID: "n1", WSURL: "ws://127.0.0.1:1/ws"}, {ID: "n2", WSURL: "ws://127.0.0.1:2/ws"}}
	plans := func(silent bool) [][]churnPlan {
		w, err := New("presence", Config{Nodes: nodes, Recorder: history.NewRecorder(nil), Seed: silentSeed, SilentClients: new(silent)})
		require.NoError(t, err)
		defer w.Close()
		var out [][]churnPlan
		for _, c := range w.(*mixed).presence.churners {
			assert.Equal(t, silent, c.viaProxy, "churn process %d dials through a proxy", c.process)
			var ps []churnPlan
			for range 200 {
				ps = append(ps, c.draw())
			}
			out = append(out, ps)
		}
		return out
	}
	on, off := plans(true), plans(false)

	// Turning silent clients off turns the silent endings into drops and
	// changes no other choice.
	ends := map[int]int{}
	for i := range on {
		for j, p := range on[i] {
			ends[p.end]++
			q := off[i][j]
			if p.end == endSilent {
				assert.Equal(t, endDrop, q.end)
				q.end = endSilent
			}
			assert.Equal(t, p, q, "plan %d of churner %d", j, i)
		}
	}
	total := float64(len(on) * len(on[0]))
	assert.InDelta(t, 0.05, float64(ends[endSilent])/total, 0.02, "silent share")
	assert.InDelta(t, 0.10, float64(ends[endDrop])/total, 0.03, "drop share")
	assert.Equal(t, endSilent, on[0][0].end, "process 1's first round with seed %d", silentSeed)
}

func TestPresenceSilentChurn(t *testing.T) {
	nodes := startMesh(t, 2)
	rec := history.NewRecorder(nil)
	w, err := New("presence", Config{Nodes: topologyNodes(nodes), Recorder: rec, Seed: silentSeed, PingInterval: testPingInterval})
	require.NoError(t, err)

	runPhases(t, w, 3*time.Second, 1500*time.Millisecond)
	ops := rec.Ops()
	requireWellFormed(t, ops)

	// Every silent drop is followed by the next epoch only after the
	// node's pong timeout had surely closed the connection.
	silent := selectOps(ops, func(op history.Op) bool { return is(history.Ok, history.FDrop)(op) && op.Error == silentError })
	require.NotEmpty(t, silent, "silent drops with seed %d", silentSeed)
	wait := int64(2*testPingInterval + time.Second)
	for _, drop := range silent {
		next := selectOps(ops, func(op history.Op) bool {
			return is(history.Invoke, history.FConnect)(op) && op.Process == drop.Process && op.Epoch == drop.Epoch+1
		})
		if len(next) > 0 {
			assert.GreaterOrEqual(t, next[0].Time-drop.Time, wait, "reconnect of process %d after its silent epoch %d", drop.Process, drop.Epoch)
		}
	}

	// The nodes closed the silent connections: no final roster lists a
	// member of one.
	truth := presenceTruth(ops)
	for _, op := range selectOps(ops, func(op history.Op) bool { return is(history.Ok, history.FMembers)(op) && op.Process >= 8 }) {
		assert.Equal(t, truth[op.Channel], memberIDs(op.Members), "final roster of %s on %s", op.Channel, op.Node)
	}
}

func TestSilentRoundNearDeadlineDrops(t *testing.T) {
	nodes := startMesh(t, 1)
	rec := history.NewRecorder(nil)
	w, err := New("presence", Config{Nodes: topologyNodes(nodes), Recorder: rec, Seed: 1, PingInterval: testPingInterval})
	require.NoError(t, err)
	defer w.Close()
	c := w.(*mixed).presence.churners[0]
	plan := churnPlan{channel: "presence-0", hold: 10 * time.Millisecond, end: endSilent}

	// ends runs one silent round with ctx ending after d and returns the
	// Error of the round's FDrop ok.
	ends := func(d time.Duration) string {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		require.True(t, c.ensure(ctx))
		c.round(ctx, plan)
		drops := selectOps(rec.Ops(), func(op history.Op) bool { return is(history.Ok, history.FDrop)(op) && op.Epoch == c.epoch })
		require.Len(t, drops, 1, "drop of epoch %d", c.epoch)
		return drops[0].Error
	}
	assert.Empty(t, ends(c.silenceTime()-100*time.Millisecond), "a silence that would outlast ctx is a plain drop")
	assert.Equal(t, silentError, ends(c.silenceTime()+time.Second))
	requireWellFormed(t, rec.Ops())
}
