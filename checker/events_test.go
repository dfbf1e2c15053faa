package checker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/history"
)

// eventsBase is a run where connection p1.e1 on n1 joined "c" as m1 and
// saw m2 already there, then received join m3, leave m2, join m4 and
// leave m4. The recovery phase starts at 11 s.
func eventsBase() *phBuilder {
	b := &phBuilder{}
	b.phases(10*time.Second, 11*time.Second, 20*time.Second, 21*time.Second)
	b.connect(1, 1, "n1", ms(1100))
	b.join(1, 1, "n1", "c", "m1", ms(1200), ms(1210), history.Ok, roster("m1@n1", "m2@n2"))
	b.event(1, 1, "n1", history.FPresenceJoin, "c", "m3", ms(3000))
	b.event(1, 1, "n1", history.FPresenceLeave, "c", "m2", ms(4000))
	b.event(1, 1, "n1", history.FPresenceJoin, "c", "m4", ms(5000))
	b.event(1, 1, "n1", history.FPresenceLeave, "c", "m4", ms(5500))
	return b
}

func TestEventsValid(t *testing.T) {
	b := eventsBase()
	b.read(1, 1, "n1", "c", ms(6000), ms(6010), roster("m1@n1", "m2@n2"))
	b.read(1, 1, "n1", "c", ms(12000), ms(12010), roster("m1@n1", "m3@n3"))

	res := Events().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["checked"])
}

func TestEventsMismatch(t *testing.T) {
	b := eventsBase()
	b.read(1, 1, "n1", "c", ms(12000), ms(12010), roster("m1@n1", "m2@n2", "m3@n3"))

	res := Events().Check(b.input(phRun))

	assert.Equal(t, Invalid, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["event-mismatch"])
	require.Len(t, res.Anomalies["event-mismatch"], 1)
	a := res.Anomalies["event-mismatch"][0]
	assert.Contains(t, a.Description, "lists [m2] besides")
	assert.Equal(t, "n1", a.Node)
	assert.Equal(t, "c", a.Channel)
}

func TestEventsDuringRead(t *testing.T) {
	// The leave of m3 was decoded after the read's invoke and before its
	// recorded return, so the reply may come before or after it.
	for name, read := range map[string][]history.Member{
		"reply first": roster("m1@n1", "m3@n3"),
		"event first": roster("m1@n1"),
	} {
		t.Run(name, func(t *testing.T) {
			b := eventsBase()
			b.event(1, 1, "n1", history.FPresenceLeave, "c", "m3", ms(12005))
			b.read(1, 1, "n1", "c", ms(12000), ms(12010), read)

			res := Events().Check(b.input(phRun))

			assert.Equal(t, Valid, res.Valid, res.Summary)
		})
	}
}

func TestEventsAfterReadIgnored(t *testing.T) {
	b := eventsBase()
	b.read(1, 1, "n1", "c", ms(12000), ms(12010), roster("m1@n1", "m3@n3"))
	b.event(1, 1, "n1", history.FPresenceJoin, "c", "m9", ms(13000))

	res := Events().Check(b.input(phRun))

	assert.Equal(t, Valid, res.Valid, res.Summary)
}

func TestEventsSkipsEndedConnections(t *testing.T) {
	b := eventsBase()
	b.read(1, 1, "n1", "c", ms(12000), ms(12010), roster("m1@n1", "m2@n2", "m3@n3"))
	b.disconnect(1, 1, "n1", ms(15000))

	res := Events().Check(b.input(phRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
	assert.Equal(t, 0, res.Counts["checked"])
}

func TestEventsNoRecoveryRead(t *testing.T) {
	b := eventsBase()
	b.read(1, 1, "n1", "c", ms(6000), ms(6010), roster("m1@n1", "m2@n2"))

	res := Events().Check(b.input(phRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
	assert.Equal(t, 1, res.Counts["unread"])
}

func TestEventsNoRecoveryPhase(t *testing.T) {
	b := &phBuilder{}
	b.phase(history.PhaseSetup, 0)

	res := Events().Check(b.input(phRun))

	assert.Equal(t, Unknown, res.Valid, res.Summary)
}
