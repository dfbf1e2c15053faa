package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/client"
)

// recorder is a client whose notifications a goroutine stores in arrival
// order.
type recorder struct {
	*client.Client

	mu    sync.Mutex
	notes []client.Notification
	done  chan struct{}
}

// dialRecorder connects a client to n and records its notifications until
// the test ends.
func dialRecorder(t *testing.T, n httpNode) *recorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, wsURL(n), client.Options{})
	require.NoError(t, err)

	r := &recorder{Client: c, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for note := range c.Notifications() {
			r.mu.Lock()
			r.notes = append(r.notes, note)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = c.Close()
		<-r.done
	})
	return r
}

// notifications returns a copy of what was recorded so far.
func (r *recorder) notifications() []client.Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]client.Notification(nil), r.notes...)
}

// messages returns the recorded messages of channel.
func (r *recorder) messages(channel string) []client.Message {
	var out []client.Message
	for _, n := range r.notifications() {
		if n.Message != nil && n.Message.Channel == channel {
			out = append(out, *n.Message)
		}
	}
	return out
}

// presenceEvents returns the recorded presence notifications of channel.
func (r *recorder) presenceEvents(channel string) []client.Notification {
	var out []client.Notification
	for _, n := range r.notifications() {
		if n.Presence != nil && n.Presence.Channel == channel {
			out = append(out, n)
		}
	}
	return out
}

// waitLeave waits for a presence.leave of member on channel and returns
// when the client received it.
func (r *recorder) waitLeave(t testing.TB, channel, member string, timeout time.Duration) time.Time {
	t.Helper()
	var at time.Time
	require.Eventually(t, func() bool {
		for _, n := range r.presenceEvents(channel) {
			if n.Method == client.MethodPresenceLeave && n.Presence.Member == member {
				at = n.Received
				return true
			}
		}
		return false
	}, timeout, pollInterval, "no presence.leave of %q on %q", member, channel)
	return at
}

// callContext returns a context that bounds one request.
func callContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testPayload is the data of every test publish: who published it and its
// place in that publisher's series.
type testPayload struct {
	Publisher string `json:"pub"`
	Seq       int    `json:"seq"`
}

// publishSeries publishes count messages with sequence numbers from first
// on, one at a time, each after the previous one's result. Every qos1Every-th
// message is QoS 1 (0 means none).
func publishSeries(ctx context.Context, c *client.Client, channel, publisher string, first, count, qos1Every int) error {
	for seq := first; seq < first+count; seq++ {
		qos := 0
		if qos1Every > 0 && seq%qos1Every == 0 {
			qos = 1
		}
		if _, err := c.Publish(ctx, channel, testPayload{Publisher: publisher, Seq: seq}, qos); err != nil {
			return fmt.Errorf("publish %d of %s: %w", seq, publisher, err)
		}
	}
	return nil
}

// deliveryReport is what one subscriber received of the test series.
type deliveryReport struct {
	// seqs holds each publisher's sequence numbers in arrival order.
	seqs map[string][]int
	// duplicateIDs counts first deliveries of an msg_id seen before.
	duplicateIDs int
	// redelivered counts QoS 1 redeliveries, which may repeat an msg_id.
	redelivered int
	// phantoms lists data that is not a test payload.
	phantoms []string
}

func summarize(msgs []client.Message) deliveryReport {
	report := deliveryReport{seqs: make(map[string][]int)}
	seen := make(map[string]bool)
	for _, m := range msgs {
		if m.Redelivered {
			report.redelivered++
			continue
		}
		if seen[m.MsgID] {
			report.duplicateIDs++
		}
		seen[m.MsgID] = true
		var p testPayload
		if err := json.Unmarshal(m.Data, &p); err != nil || p.Publisher == "" {
			report.phantoms = append(report.phantoms, string(m.Data))
			continue
		}
		report.seqs[p.Publisher] = append(report.seqs[p.Publisher], p.Seq)
	}
	return report
}

// hasAll reports whether every publisher's last sequence number arrived.
func (d deliveryReport) hasAll(want map[string]int) bool {
	for publisher, count := range want {
		seqs := d.seqs[publisher]
		if count > 0 && (len(seqs) == 0 || seqs[len(seqs)-1] < count-1) {
			return false
		}
	}
	return true
}

// waitDelivery waits until r has received the last message of every
// publisher in want (publisher to series length) on channel, then checks
// that every message arrived exactly once and in each publisher's order.
func waitDelivery(t testing.TB, r *recorder, name, channel string, want map[string]int) {
	t.Helper()
	require.Eventually(t, func() bool {
		return summarize(r.messages(channel)).hasAll(want)
	}, waitTimeout, pollInterval, "subscriber %s: not every publisher's last message arrived", name)

	report := summarize(r.messages(channel))
	assert.Zero(t, report.duplicateIDs, "subscriber %s: msg_ids delivered twice", name)
	assert.Empty(t, report.phantoms, "subscriber %s: messages nobody published", name)
	for publisher, count := range want {
		wantSeqs := make([]int, count)
		for i := range wantSeqs {
			wantSeqs[i] = i
		}
		assert.Equal(t, wantSeqs, report.seqs[publisher],
			"subscriber %s: messages of %s must arrive once each, in publish order", name, publisher)
	}
	for publisher := range report.seqs {
		_, expected := want[publisher]
		assert.True(t, expected, "subscriber %s: messages from unexpected publisher %s", name, publisher)
	}
}

// memberIDs returns the member ids of a roster.
func memberIDs(roster []client.Member) []string {
	ids := make([]string, 0, len(roster))
	for _, m := range roster {
		ids = append(ids, m.Member)
	}
	sort.Strings(ids)
	return ids
}

// rosterOf returns the member ids of channel as seen through c.
func rosterOf(t testing.TB, c *client.Client, channel string) []string {
	t.Helper()
	roster, err := c.Members(callContext(t), channel)
	require.NoError(t, err)
	return memberIDs(roster)
}

// waitRosters waits until every client sees exactly want on channel and
// returns how long that took.
func waitRosters(t testing.TB, clients map[string]*recorder, channel string, want []string, timeout time.Duration) time.Duration {
	t.Helper()
	want = append([]string{}, want...)
	sort.Strings(want)
	start := time.Now()
	deadline := start.Add(timeout)
	for name, c := range clients {
		for {
			last := rosterOf(t, c.Client, channel)
			if equalStrings(last, want) {
				break
			}
			if time.Now().After(deadline) {
				require.Failf(t, "roster did not converge", "roster of %q on %s is %v after %s, want %v", channel, name, last, timeout, want)
			}
			time.Sleep(pollInterval)
		}
	}
	return time.Since(start)
}

// replayRoster applies the presence events a client received after its
// join, in order, to the roster its join returned, as a client application
// would.
func replayRoster(joined []client.Member, events []client.Notification) []string {
	members := make(map[string]bool)
	for _, id := range memberIDs(joined) {
		members[id] = true
	}
	for _, n := range events {
		switch n.Method {
		case client.MethodPresenceJoin:
			members[n.Presence.Member] = true
		case client.MethodPresenceLeave:
			delete(members, n.Presence.Member)
		}
	}
	ids := make([]string, 0, len(members))
	for id := range members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
