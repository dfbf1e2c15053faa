package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

type fakeHub struct {
	mu    sync.Mutex
	conns map[*websocket.Conn]map[string]bool
	wmu   map[*websocket.Conn]*sync.Mutex
	n     int
}

func (h *fakeHub) handler(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{Subprotocols: []string{"wscluster.v1"}}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	h.mu.Lock()
	h.conns[c] = map[string]bool{}
	h.wmu[c] = &sync.Mutex{}
	h.mu.Unlock()
	defer func() { h.mu.Lock(); delete(h.conns, c); h.mu.Unlock(); c.Close() }()
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string
			Params map[string]any
		}
		json.Unmarshal(data, &req)
		var result any
		switch req.Method {
		case "subscribe":
			h.mu.Lock()
			h.conns[c][req.Params["channel"].(string)] = true
			h.mu.Unlock()
			result = map[string]any{"channel": req.Params["channel"]}
		case "publish":
			h.mu.Lock()
			h.n++
			id := fmt.Sprintf("m%d", h.n)
			ch := req.Params["channel"].(string)
			for oc, subs := range h.conns {
				if subs[ch] {
					msg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "message", "params": map[string]any{"channel": ch, "data": req.Params["data"], "msg_id": id, "qos": req.Params["qos"]}})
					h.wmu[oc].Lock()
					oc.WriteMessage(websocket.TextMessage, msg)
					h.wmu[oc].Unlock()
				}
			}
			h.mu.Unlock()
			result = map[string]any{"msg_id": id}
		case "ack":
			continue
		default:
			resp, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.ID, "error": map[string]any{"code": -32601, "message": "method not found"}})
			h.wmu[c].Lock()
			c.WriteMessage(websocket.TextMessage, resp)
			h.wmu[c].Unlock()
			continue
		}
		resp, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": result})
		h.mu.Lock()
		m := h.wmu[c]
		h.mu.Unlock()
		m.Lock()
		c.WriteMessage(websocket.TextMessage, resp)
		m.Unlock()
	}
}

func TestScratch(t *testing.T) {
	h := &fakeHub{conns: map[*websocket.Conn]map[string]bool{}, wmu: map[*websocket.Conn]*sync.Mutex{}}
	ts := httptest.NewServer(http.HandlerFunc(h.handler))
	url := "ws" + strings.TrimPrefix(ts.URL, "http")
	ctx := context.Background()
	c, err := Dial(ctx, url, Options{NotifyBuffer: 1, Reconnect: true, ReconnectMin: 10 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, c.Subscribe(ctx, "a"))
	for i := 0; i < 5; i++ {
		_, err := c.Publish(ctx, "a", i, 1)
		require.NoError(t, err)
	}
	for i := 0; i < 5; i++ {
		n := <-c.Notifications()
		require.Equal(t, fmt.Sprint(i), string(n.Message.Data))
	}
	err = c.Call(ctx, "nope", nil, nil)
	t.Log(err)
	// drop connections server side
	h.mu.Lock()
	for oc := range h.conns {
		oc.Close()
	}
	h.mu.Unlock()
	n := <-c.Notifications()
	require.Equal(t, MethodReconnected, n.Method)
	_, err = c.Publish(ctx, "a", "x", 0)
	require.NoError(t, err)
	n = <-c.Notifications()
	require.Equal(t, `"x"`, string(n.Message.Data))
	require.NoError(t, c.Close())
	require.NoError(t, c.Close())
	_, ok := <-c.Notifications()
	require.False(t, ok)
	t.Log(c.CloseError())
	ts.Close()
}
