package presence_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/presence"
	"github.com/wscluster/wscluster/server"
)

// watcher is a real WebSocket client that joined a channel and records
// the presence events it receives.
type watcher struct {
	t      *testing.T
	ws     *websocket.Conn
	frames chan map[string]any
}

func startNode(t *testing.T) (*server.Node, string) {
	t.Helper()
	cfg := config.Default()
	cfg.NodeID = "local"
	node, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	ts := httptest.NewServer(node.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = node.Shutdown(ctx)
		ts.Close()
	})
	return node, "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
}

func joinAs(t *testing.T, url, channel, member string) *watcher {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ws.Close() })
	w := &watcher{t: t, ws: ws, frames: make(chan map[string]any, 64)}
	go w.readLoop()
	req := `{"jsonrpc":"2.0","id":1,"method":"presence.join","params":{"channel":"` + channel + `","member":"` + member + `"}}`
	require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(req)))
	reply := w.next()
	require.Contains(t, reply, "result", "join reply: %v", reply)
	return w
}

// readLoop decodes frames into w.frames until the connection closes. A
// read timeout would break a gorilla connection for good, so the waits with
// deadlines happen on the channel instead.
func (w *watcher) readLoop() {
	defer close(w.frames)
	for {
		_, data, err := w.ws.ReadMessage()
		if err != nil {
			return
		}
		var v map[string]any
		if json.Unmarshal(data, &v) == nil {
			w.frames <- v
		}
	}
}

// next returns the next frame, failing after two seconds.
func (w *watcher) next() map[string]any {
	w.t.Helper()
	select {
	case v, ok := <-w.frames:
		require.True(w.t, ok, "connection closed")
		return v
	case <-time.After(2 * time.Second):
		require.FailNow(w.t, "no frame within 2s")
		return nil
	}
}

// expectEvent reads the next frame and checks it is the given event.
func (w *watcher) expectEvent(method, member string) {
	w.t.Helper()
	v := w.next()
	require.Equal(w.t, method, v["method"], "frame: %v", v)
	params := v["params"].(map[string]any)
	require.Equal(w.t, member, params["member"], "frame: %v", v)
}

// expectSilence checks that no frame arrives within a short wait.
func (w *watcher) expectSilence() {
	w.t.Helper()
	select {
	case v := <-w.frames:
		require.FailNow(w.t, "unexpected frame", "%v", v)
	case <-time.After(150 * time.Millisecond):
	}
}

func entry(node, conn, member string) backplane.PresenceEntry {
	return backplane.PresenceEntry{Channel: "room", Member: member, Node: node, Conn: conn, Info: json.RawMessage(`{}`)}
}

func memberIDs(members []presence.Member) []string {
	ids := make([]string, 0, len(members))
	for _, m := range members {
		ids = append(ids, m.Member)
	}
	return ids
}

func TestApplyRemoteJoinAndLeaveEvents(t *testing.T) {
	node, url := startNode(t)
	w := joinAs(t, url, "room", "alice")
	p := node.Presence()

	p.ApplyRemote("n2", []backplane.PresenceDelta{{Op: backplane.PresenceJoin, Entry: entry("n2", "c1", "bob")}})
	w.expectEvent("presence.join", "bob")

	// A second connection of the same member id is not a new member.
	p.ApplyRemote("n3", []backplane.PresenceDelta{{Op: backplane.PresenceJoin, Entry: entry("n3", "c9", "bob")}})
	w.expectSilence()
	require.Len(t, p.Members("room")[1].Connections, 2)

	p.ApplyRemote("n2", []backplane.PresenceDelta{{Op: backplane.PresenceLeave, Entry: entry("n2", "c1", "bob")}})
	w.expectSilence()
	p.ApplyRemote("n3", []backplane.PresenceDelta{{Op: backplane.PresenceLeave, Entry: entry("n3", "c9", "bob")}})
	w.expectEvent("presence.leave", "bob")
	require.Equal(t, []string{"alice"}, memberIDs(p.Members("room")))
}

func TestApplyRemoteIgnoresForeignNode(t *testing.T) {
	node, url := startNode(t)
	w := joinAs(t, url, "room", "alice")
	p := node.Presence()

	// n2 may not speak for n3, nor for this node.
	p.ApplyRemote("n2", []backplane.PresenceDelta{{Op: backplane.PresenceJoin, Entry: entry("n3", "c1", "mallory")}})
	p.ApplyRemote("local", []backplane.PresenceDelta{{Op: backplane.PresenceJoin, Entry: entry("local", "cX", "mallory")}})
	w.expectSilence()
	require.Equal(t, []string{"alice"}, memberIDs(p.Members("room")))
}

func TestSyncNodeReplacesAndPurges(t *testing.T) {
	node, url := startNode(t)
	w := joinAs(t, url, "room", "alice")
	p := node.Presence()

	p.SyncNode("n2", []backplane.PresenceEntry{entry("n2", "c1", "bob"), entry("n2", "c2", "carol")})
	first, second := w.next(), w.next()
	joined := []any{first["params"].(map[string]any)["member"], second["params"].(map[string]any)["member"]}
	require.ElementsMatch(t, []any{"bob", "carol"}, joined)

	// A sync that drops carol and moves c1 from bob to dave emits exactly
	// those changes.
	p.SyncNode("n2", []backplane.PresenceEntry{entry("n2", "c1", "dave")})
	events := map[string]string{}
	for range 3 {
		v := w.next()
		events[v["params"].(map[string]any)["member"].(string)] = v["method"].(string)
	}
	require.Equal(t, map[string]string{"bob": "presence.leave", "carol": "presence.leave", "dave": "presence.join"}, events)
	require.Equal(t, []string{"alice", "dave"}, memberIDs(p.Members("room")))

	// The same sync again changes nothing.
	p.SyncNode("n2", []backplane.PresenceEntry{entry("n2", "c1", "dave")})
	w.expectSilence()

	// A purge removes every entry of the node.
	p.SyncNode("n2", nil)
	w.expectEvent("presence.leave", "dave")
	require.Equal(t, []string{"alice"}, memberIDs(p.Members("room")))
}

func TestLocalEntriesSnapshot(t *testing.T) {
	node, url := startNode(t)
	joinAs(t, url, "room", "alice")
	joinAs(t, url, "room", "bob")
	p := node.Presence()
	p.ApplyRemote("n2", []backplane.PresenceDelta{{Op: backplane.PresenceJoin, Entry: entry("n2", "c1", "remote")}})

	local := p.LocalEntries()
	require.Len(t, local, 2)
	for _, e := range local {
		require.Equal(t, "local", e.Node)
		require.Equal(t, "room", e.Channel)
		require.JSONEq(t, `{}`, string(e.Info))
	}
	require.ElementsMatch(t, []string{"alice", "bob"}, []string{local[0].Member, local[1].Member})
}

func TestRemoteEntriesSurviveLocalLeave(t *testing.T) {
	node, url := startNode(t)
	w := joinAs(t, url, "room", "alice")
	p := node.Presence()
	p.ApplyRemote("n2", []backplane.PresenceDelta{{Op: backplane.PresenceJoin, Entry: entry("n2", "c1", "alice")}})
	w.expectSilence()

	// alice still has a connection on n2, so her local leave is no event
	// for others and the roster keeps her.
	other := joinAs(t, url, "room", "bob")
	w.expectEvent("presence.join", "bob")
	require.NoError(t, w.ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":2,"method":"presence.leave","params":{"channel":"room"}}`)))
	require.Contains(t, w.next(), "result")
	other.expectSilence()
	require.Equal(t, []string{"alice", "bob"}, memberIDs(p.Members("room")))
}
