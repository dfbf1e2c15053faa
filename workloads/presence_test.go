package workloads

import (
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/history"
)

func TestPresenceRecordsJoinsAndEvents(t *testing.T) {
	nodes := startMesh(t, 2)
	rec := history.NewRecorder(nil)
	w, err := New("presence", Config{Nodes: topologyNodes(nodes), Recorder: rec, Seed: 11})
	require.NoError(t, err)

	runPhases(t, w, 3*time.Second, 1500*time.Millisecond)
	ops := rec.Ops()
	requireWellFormed(t, ops)

	// Processes 0 and 4 observe (one per node), 1-3 and 5-7 churn, and the
	// final readers are 8 and 9.
	observers := map[int]string{0: "obs-n1-p0", 4: "obs-n2-p4"}
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
