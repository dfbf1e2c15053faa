package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/config"
)

// rosterMember is one entry of a roster as the protocol sends it.
type rosterMember struct {
	Member      string       `json:"member"`
	Connections []rosterConn `json:"connections"`
}

type rosterConn struct {
	Node string          `json:"node"`
	Conn string          `json:"conn"`
	Info json.RawMessage `json:"info"`
}

type rosterResult struct {
	Channel string         `json:"channel"`
	Members []rosterMember `json:"members"`
}

// decodeRoster requires frame to be a success response carrying a roster.
func decodeRoster(t *testing.T, frame []byte) rosterResult {
	t.Helper()

	resp := decodeRawResponse(t, frame)
	require.Nil(t, resp.Error, "expected a roster, got %s", frame)
	var result rosterResult
	require.NoError(t, json.Unmarshal(resp.Result, &result), "frame: %s", frame)
	require.NotNil(t, result.Members, "members must be an array: %s", frame)
	return result
}

// join joins channel as member with info given as raw JSON ("" for none),
// sent exactly as given, and returns the roster of the result.
func join(t *testing.T, ws *websocket.Conn, channel, member, info string) []rosterMember {
	t.Helper()

	// The frame is built by hand, because json.Marshal would compact info.
	params := `"channel":` + quote(channel) + `,"member":` + quote(member)
	if info != "" {
		params += `,"info":` + info
	}
	raw := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"presence.join","params":{%s}}`, requestIDs.Add(1), params)
	result := decodeRoster(t, callRaw(t, ws, raw))
	require.Equal(t, channel, result.Channel)
	return result.Members
}

// members returns the roster of channel.
func members(t *testing.T, ws *websocket.Conn, channel string) []rosterMember {
	t.Helper()

	raw, _ := request(t, "presence.members", map[string]any{"channel": channel})
	result := decodeRoster(t, callRaw(t, ws, raw))
	require.Equal(t, channel, result.Channel)
	return result.Members
}

// leave leaves channel and checks the {"channel"} result.
func leave(t *testing.T, ws *websocket.Conn, channel string) {
	t.Helper()

	result := requestOK(t, ws, "presence.leave", map[string]any{"channel": channel})
	require.Equal(t, map[string]any{"channel": channel}, result)
}

// connID returns the connection id that the server gave ws, read from the
// roster of a channel that only ws joins.
func connID(t *testing.T, ws *websocket.Conn) string {
	t.Helper()

	channel := fmt.Sprintf("whoami-%d", requestIDs.Add(1))
	roster := join(t, ws, channel, "me", "")
	require.Len(t, roster, 1)
	require.Len(t, roster[0].Connections, 1)
	leave(t, ws, channel)
	return roster[0].Connections[0].Conn
}

// memberIDs returns the member ids of a roster in roster order.
func memberIDs(roster []rosterMember) []string {
	ids := make([]string, 0, len(roster))
	for _, m := range roster {
		ids = append(ids, m.Member)
	}
	return ids
}

// nextPresenceEvent requires the next frame to be a presence notification
// and returns it.
func nextPresenceEvent(t *testing.T, ws *websocket.Conn) notification {
	t.Helper()

	n := nextNotification(t, ws)
	require.True(t, strings.HasPrefix(n.Method, "presence."), "expected a presence event, got %s", n.Raw)
	return n
}

func TestJoinResultContainsOwnEntry(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	frame := callRaw(t, ws, `{"jsonrpc":"2.0","id":"j","method":"presence.join","params":{"channel":"room","member":"alice","info":{"name":"Alice","n":1}}}`)
	roster := decodeRoster(t, frame).Members
	require.Len(t, roster, 1)
	require.Len(t, roster[0].Connections, 1)
	conn := roster[0].Connections[0].Conn
	require.NotEmpty(t, conn)

	// The whole response, with the conn id filled in, is exactly the
	// documented shape.
	want := fmt.Sprintf(`{"jsonrpc":"2.0","id":"j","result":{"channel":"room","members":[
		{"member":"alice","connections":[{"node":"n1","conn":%q,"info":{"name":"Alice","n":1}}]}]}}`, conn)
	assert.JSONEq(t, want, string(frame))

	// presence.members shows the same roster.
	assert.Equal(t, roster, members(t, ws, "room"))
}

func TestMissingInfoIsEmptyObject(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	roster := join(t, ws, "room", "bob", "")
	require.Len(t, roster, 1)
	assert.JSONEq(t, `{}`, string(roster[0].Connections[0].Info))
}

func TestRosterSortedByMemberThenConn(t *testing.T) {
	_, url := startNode(t, nil)
	observer := dialRaw(t, url)

	// Member ids in an order that neither insertion nor a case-folding
	// sort would give; sorting is by bytes.
	joinOrder := []string{"m", "b", "Z", "a", "m", "é", "m", "A", "b"}
	connsOf := make(map[string][]string)
	for _, member := range joinOrder {
		ws := dialRaw(t, url)
		connsOf[member] = append(connsOf[member], connID(t, ws))
		join(t, ws, "room", member, "")
	}

	roster := members(t, observer, "room")
	assert.Equal(t, []string{"A", "Z", "a", "b", "m", "é"}, memberIDs(roster))
	for _, m := range roster {
		var conns []string
		for _, c := range m.Connections {
			assert.Equal(t, "n1", c.Node)
			conns = append(conns, c.Conn)
		}
		assert.True(t, sort.StringsAreSorted(conns), "connections of %q are not sorted: %v", m.Member, conns)
		assert.ElementsMatch(t, connsOf[m.Member], conns, "connections of %q", m.Member)
	}
}

func TestSameMemberOnTwoConnections(t *testing.T) {
	_, url := startNode(t, nil)
	watcher := dialRaw(t, url)
	first := dialRaw(t, url)
	second := dialRaw(t, url)
	marker := dialRaw(t, url)
	join(t, watcher, "room", "w", "")

	// The member's first connection is announced with its node, conn and
	// info.
	firstConn := connID(t, first)
	join(t, first, "room", "m", `{"device":"phone"}`)
	event := nextPresenceEvent(t, watcher)
	want := fmt.Sprintf(`{"jsonrpc":"2.0","method":"presence.join","params":{"channel":"room","member":"m","node":"n1","conn":%q,"info":{"device":"phone"}}}`, firstConn)
	assert.JSONEq(t, want, string(event.Raw))

	// The second connection of the same member is not announced: the
	// next event the watcher gets is the marker's join.
	roster := join(t, second, "room", "m", `{"device":"laptop"}`)
	require.Equal(t, []string{"m", "w"}, memberIDs(roster))
	require.Len(t, roster[0].Connections, 2, "one entry per member, one item per connection")
	join(t, marker, "room", "marker-1", "")
	assert.Equal(t, "marker-1", nextPresenceEvent(t, watcher).Params["member"])

	// The first connection of the member already in the roster gets no
	// event for the second one either.
	event = nextPresenceEvent(t, first)
	assert.Equal(t, "marker-1", event.Params["member"], "unexpected event %s", event.Raw)

	// One connection leaving is not the member leaving.
	leave(t, first, "room")
	leave(t, marker, "room")
	event = nextPresenceEvent(t, watcher)
	assert.JSONEq(t, `{"jsonrpc":"2.0","method":"presence.leave","params":{"channel":"room","member":"marker-1"}}`, string(event.Raw))
	roster = members(t, watcher, "room")
	require.Equal(t, []string{"m", "w"}, memberIDs(roster))
	require.Len(t, roster[0].Connections, 1)
	assert.JSONEq(t, `{"device":"laptop"}`, string(roster[0].Connections[0].Info))

	// The last connection leaving is.
	leave(t, second, "room")
	event = nextPresenceEvent(t, watcher)
	assert.JSONEq(t, `{"jsonrpc":"2.0","method":"presence.leave","params":{"channel":"room","member":"m"}}`, string(event.Raw))
	assert.Equal(t, []string{"w"}, memberIDs(members(t, watcher, "room")))
}

func TestJoinAsAnotherMemberRejected(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)
	join(t, ws, "room", "a", "")

	code := requestCode(t, ws, "presence.join", map[string]any{"channel": "room", "member": "b"})
	assert.Equal(t, 1004, code)
	assert.Equal(t, []string{"a"}, memberIDs(members(t, ws, "room")))

	// Another channel may be joined as another member, and after leaving
	// the channel may be joined again as someone else.
	join(t, ws, "hall", "b", "")
	leave(t, ws, "room")
	assert.Equal(t, []string{"c"}, memberIDs(join(t, ws, "room", "c", "")))
}

func TestRejoinAsSameMemberIsHarmless(t *testing.T) {
	_, url := startNode(t, nil)
	watcher := dialRaw(t, url)
	ws := dialRaw(t, url)
	marker := dialRaw(t, url)
	join(t, watcher, "room", "w", "")

	first := join(t, ws, "room", "m", `{"v":1}`)
	second := join(t, ws, "room", "m", `{"v":1}`)
	assert.Equal(t, first, second)
	require.Len(t, second[0].Connections, 1, "a repeated join added a connection")
	assert.Equal(t, float64(2), metricValue(t, url, "wscluster_presence_members", `scope="local"`),
		"the watcher and one entry of the rejoined connection")

	// One join event only: the marker's join comes right after it.
	assert.Equal(t, "m", nextPresenceEvent(t, watcher).Params["member"])
	join(t, marker, "room", "marker", "")
	assert.Equal(t, "marker", nextPresenceEvent(t, watcher).Params["member"])

	// A single leave removes the member.
	leave(t, ws, "room")
	assert.Equal(t, "m", nextPresenceEvent(t, watcher).Params["member"])
	assert.Equal(t, []string{"marker", "w"}, memberIDs(members(t, watcher, "room")))
}

func TestLeaveWithoutJoin(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	frame := callRaw(t, ws, `{"jsonrpc":"2.0","id":4,"method":"presence.leave","params":{"channel":"room"}}`)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":4,"result":{"channel":"room"}}`, string(frame))

	// Leaving twice is the same.
	join(t, ws, "room", "m", "")
	leave(t, ws, "room")
	leave(t, ws, "room")
}

func TestDisconnectSendsLeave(t *testing.T) {
	_, url := startNode(t, nil)
	watcher := dialRaw(t, url)
	leaver := dialRaw(t, url)
	join(t, watcher, "room", "w", "")
	join(t, leaver, "room", "g", "")
	assert.Equal(t, "g", nextPresenceEvent(t, watcher).Params["member"])

	// The connection drops without a close handshake or a leave.
	require.NoError(t, leaver.NetConn().Close())

	event := nextPresenceEvent(t, watcher)
	assert.JSONEq(t, `{"jsonrpc":"2.0","method":"presence.leave","params":{"channel":"room","member":"g"}}`, string(event.Raw))
	assert.Equal(t, []string{"w"}, memberIDs(members(t, watcher, "room")))
}

func TestNoJoinEventForOwnJoin(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)
	other := dialRaw(t, url)

	join(t, ws, "room", "self", "")
	join(t, other, "room", "other", "")

	// The first event is the other member's join, not this connection's.
	event := nextPresenceEvent(t, ws)
	assert.Equal(t, "presence.join", event.Method)
	assert.Equal(t, "other", event.Params["member"])

	// Nor does the leaving connection get its own leave.
	leave(t, ws, "room")
	flush(t, ws)
}

func TestMembersOfUnknownChannel(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	frame := callRaw(t, ws, `{"jsonrpc":"2.0","id":1,"method":"presence.members","params":{"channel":"nobody"}}`)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{"channel":"nobody","members":[]}}`, string(frame))
	assert.Contains(t, string(frame), `"members":[]`, "members must be an empty array, not null")

	// A channel whose last member left is empty again.
	join(t, ws, "room", "m", "")
	leave(t, ws, "room")
	assert.Empty(t, members(t, ws, "room"))
}

func TestMembersDoesNotJoin(t *testing.T) {
	_, url := startNode(t, nil)
	reader := dialRaw(t, url)
	ws := dialRaw(t, url)

	assert.Empty(t, members(t, reader, "room"))
	join(t, ws, "room", "m", "")
	leave(t, ws, "room")

	// Asking for the roster did not make the reader a watcher.
	flush(t, reader)
}

func TestMemberIDRules(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	invalid := map[string]string{
		"empty":              "",
		"129 bytes":          strings.Repeat("m", 129),
		"multibyte over 128": strings.Repeat("m", 127) + "é",
		"NUL":                "a\u0000",
		"unit separator":     "\u001f",
		"DEL":                "a\u007f",
		"C1 next line":       "a\u0085",
	}
	for name, member := range invalid {
		t.Run(name, func(t *testing.T) {
			code := requestCode(t, ws, "presence.join", map[string]any{"channel": "room", "member": member})
			assert.Equal(t, 1002, code)
		})
	}

	valid := map[string]string{
		"128 bytes":           strings.Repeat("m", 128),
		"multibyte 128 bytes": strings.Repeat("é", 64),
		"glob characters":     `*?[]\`,
	}
	for name, member := range valid {
		t.Run(name, func(t *testing.T) {
			roster := join(t, ws, "valid", member, "")
			assert.Equal(t, []string{member}, memberIDs(roster))
			leave(t, ws, "valid")
		})
	}

	// Missing or mistyped params are invalid params, not invalid ids.
	assert.Equal(t, -32602, requestCode(t, ws, "presence.join", map[string]any{"channel": "room"}))
	assert.Equal(t, -32602, requestCode(t, ws, "presence.join", map[string]any{"member": "m"}))
	assert.Equal(t, -32602, requestCode(t, ws, "presence.join", map[string]any{"channel": "room", "member": 5}))
	assert.Empty(t, members(t, ws, "room"))
}

// infoOfSize returns a JSON object of exactly n bytes as compact JSON.
func infoOfSize(t *testing.T, n int) string {
	t.Helper()

	const overhead = len(`{"k":""}`)
	info := `{"k":"` + strings.Repeat("x", n-overhead) + `"}`
	require.Len(t, info, n)
	return info
}

func TestMemberInfoRules(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	invalid := map[string]string{
		"array":              `[1]`,
		"string":             `"info"`,
		"number":             `1`,
		"boolean":            `true`,
		"1025 bytes compact": infoOfSize(t, 1025),
	}
	for name, info := range invalid {
		t.Run(name, func(t *testing.T) {
			params := map[string]any{"channel": "room", "member": "m", "info": json.RawMessage(info)}
			assert.Equal(t, 1002, requestCode(t, ws, "presence.join", params))
		})
	}
	assert.Empty(t, members(t, ws, "room"), "a rejected join left an entry")

	// Exactly 1024 bytes is allowed, and so is a larger text that compacts
	// to 1024 bytes.
	exact := infoOfSize(t, 1024)
	roster := join(t, ws, "exact", "m", exact)
	assert.JSONEq(t, exact, string(roster[0].Connections[0].Info))

	spaced := "{ \n\t\"k\" :  \"" + strings.Repeat("x", 1024-len(`{"k":""}`)) + "\" \n}"
	require.Greater(t, len(spaced), 1024)
	roster = join(t, ws, "spaced", "m", spaced)
	assert.Equal(t, exact, string(roster[0].Connections[0].Info), "info is kept as compact JSON")

	nested := `{"a":{"b":[1,2,{"c":null}]},"d":"é"}`
	roster = join(t, ws, "nested", "m", nested)
	assert.JSONEq(t, nested, string(roster[0].Connections[0].Info))
}

func TestJoinEventCarriesInfo(t *testing.T) {
	_, url := startNode(t, nil)
	watcher := dialRaw(t, url)
	ws := dialRaw(t, url)
	join(t, watcher, "room", "w", "")

	conn := connID(t, ws)
	join(t, ws, "room", "m", `{ "role" : "admin" }`)
	event := nextPresenceEvent(t, watcher)
	want := fmt.Sprintf(`{"channel":"room","member":"m","node":"n1","conn":%q,"info":{"role":"admin"}}`, conn)
	params, err := json.Marshal(event.Params)
	require.NoError(t, err)
	assert.JSONEq(t, want, string(params))
}

// churner is one connection of TestPresenceEventConsistency that changes
// the roster of "room". ops counts the changes of all churners.
type churner struct {
	ws     *websocket.Conn
	index  int
	rounds int
	ops    *atomic.Int64
}

// run joins and leaves "room" as members shared with other churners, and
// ends joined when the churner's index is even.
func (c churner) run() error {
	for round := range c.rounds {
		member := fmt.Sprintf("m%d", (c.index+round)%4)
		if err := roundTrip(c.ws, "presence.join", map[string]any{"channel": "room", "member": member, "info": map[string]any{"round": round}}); err != nil {
			return err
		}
		c.ops.Add(1)
		if round == c.rounds-1 && c.index%2 == 0 {
			return nil
		}
		if err := roundTrip(c.ws, "presence.leave", map[string]any{"channel": "room"}); err != nil {
			return err
		}
		c.ops.Add(1)
	}
	return nil
}

// roundTrip sends a request and waits for a success response, skipping
// notifications. It reports failures as errors, because it runs outside
// the test goroutine.
func roundTrip(ws *websocket.Conn, method string, params any) error {
	raw, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	if err != nil {
		return fmt.Errorf("encode %s: %w", method, err)
	}
	deadline := time.Now().Add(waitTimeout)
	if err := errors.Join(ws.SetWriteDeadline(deadline), ws.SetReadDeadline(deadline)); err != nil {
		return fmt.Errorf("set deadlines: %w", err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, raw); err != nil {
		return fmt.Errorf("send %s: %w", method, err)
	}
	for {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			return fmt.Errorf("read the %s response: %w", method, err)
		}
		if isNotification(frame) {
			continue
		}
		var resp rawResponse
		if err := json.Unmarshal(frame, &resp); err != nil {
			return fmt.Errorf("decode the %s response %s: %w", method, frame, err)
		}
		if resp.Error != nil {
			return fmt.Errorf("%s failed: %s", method, frame)
		}
		return nil
	}
}

// watcher is a connection that joined "room" and tracks its roster from the
// join result and the events that followed it.
type watcher struct {
	ws     *websocket.Conn
	member string
	set    map[string]bool
}

// joinWatcher joins "room" and reads frames up to the join result. No event
// of "room" may come before it, because the connection was not a member.
func joinWatcher(t *testing.T, url, member string) *watcher {
	t.Helper()

	ws := dialRaw(t, url)
	raw, _ := request(t, "presence.join", map[string]any{"channel": "room", "member": member})
	sendText(t, ws, raw)
	frame := readWire(t, ws)
	require.False(t, isNotification(frame), "an event arrived before the join result: %s", frame)

	w := &watcher{ws: ws, member: member, set: make(map[string]bool)}
	for _, id := range memberIDs(decodeRoster(t, frame).Members) {
		w.set[id] = true
	}
	require.True(t, w.set[member], "the join result lacks the joining member")
	return w
}

// apply reads every event up to the response of a final presence.members
// request, applies them in order and returns that response's member ids.
func (w *watcher) apply(t *testing.T) []string {
	t.Helper()

	raw, _ := request(t, "presence.members", map[string]any{"channel": "room"})
	sendText(t, w.ws, raw)
	for {
		frame := readWire(t, w.ws)
		if !isNotification(frame) {
			return memberIDs(decodeRoster(t, frame).Members)
		}
		var event struct {
			Method string `json:"method"`
			Params struct {
				Channel string `json:"channel"`
				Member  string `json:"member"`
			} `json:"params"`
		}
		require.NoError(t, json.Unmarshal(frame, &event))
		require.Equal(t, "room", event.Params.Channel)
		switch event.Method {
		case "presence.join":
			require.False(t, w.set[event.Params.Member], "watcher %s: join of %q, which is already present", w.member, event.Params.Member)
			w.set[event.Params.Member] = true
		case "presence.leave":
			require.True(t, w.set[event.Params.Member], "watcher %s: leave of %q, which is absent", w.member, event.Params.Member)
			delete(w.set, event.Params.Member)
		default:
			t.Fatalf("unexpected notification %s", frame)
		}
	}
}

func (w *watcher) members() []string {
	ids := make([]string, 0, len(w.set))
	for id := range w.set {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TestPresenceEventConsistency churns a channel from several connections
// while watchers join it at different moments. Each watcher's join roster
// plus the events it received afterwards must equal the final roster.
func TestPresenceEventConsistency(t *testing.T) {
	_, url := startNode(t, nil)
	const churners, rounds = 6, 40
	var ops atomic.Int64

	conns := make([]*websocket.Conn, churners)
	for i := range conns {
		conns[i] = dialRaw(t, url)
	}
	var wg sync.WaitGroup
	errs := make([]error, churners)
	for i, ws := range conns {
		wg.Go(func() { errs[i] = churner{ws: ws, index: i, rounds: rounds, ops: &ops}.run() })
	}

	// Watchers join while the churn goes on, after it made some progress.
	var watchers []*watcher
	for i, progress := range []int64{0, 30, 120} {
		waitUntil(t, fmt.Sprintf("the churners made %d changes", progress), func() bool { return ops.Load() >= progress })
		watchers = append(watchers, joinWatcher(t, url, fmt.Sprintf("w%d", i)))
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))

	// Two churners that stayed joined drop their connections, which must
	// be seen as leaves too.
	require.NoError(t, conns[0].NetConn().Close())
	require.NoError(t, conns[2].NetConn().Close())
	observer := dialRaw(t, url)
	want := []string{"m3", "w0", "w1", "w2"}
	waitUntil(t, "the roster is "+strings.Join(want, " "), func() bool {
		return slices.Equal(want, memberIDs(members(t, observer, "room")))
	})

	for _, w := range watchers {
		final := w.apply(t)
		assert.Equal(t, want, final)
		assert.Equal(t, final, w.members(), "watcher %s: join roster plus events differs from presence.members", w.member)
	}
}

// TestJoinInBatchOrdersEventsAfterResult joins a channel inside a large
// batch while another connection joins the same channel. The join result
// must come before any event that its roster does not reflect.
func TestJoinInBatchOrdersEventsAfterResult(t *testing.T) {
	_, url := startNode(t, func(cfg *config.Node) {
		cfg.MaxMessageBytes = 4 << 20
		cfg.SendQueueBytes = 16 << 20
	})
	x := dialRaw(t, url)
	y := dialRaw(t, url)
	observer := dialRaw(t, url)

	// The join comes first, then enough work to keep the batch busy while
	// y joins.
	items := []string{`{"jsonrpc":"2.0","id":"join","method":"presence.join","params":{"channel":"room","member":"x"}}`}
	for range 5000 {
		items = append(items, `{"jsonrpc":"2.0","id":1,"method":"presence.members","params":{"channel":"other"}}`)
	}
	sendText(t, x, "["+strings.Join(items, ",")+"]")
	waitUntil(t, "x is in the roster", func() bool {
		return len(members(t, observer, "room")) == 1
	})
	join(t, y, "room", "y", "")

	frame := readWire(t, x)
	require.False(t, isNotification(frame), "an event arrived before the batch with the join result: %s", frame)
	var responses []rawResponse
	require.NoError(t, json.Unmarshal(frame, &responses))
	var roster rosterResult
	require.NoError(t, json.Unmarshal(responses[0].Result, &roster))
	assert.Equal(t, []string{"x"}, memberIDs(roster.Members))
	assert.Equal(t, "y", nextPresenceEvent(t, x).Params["member"])
}
