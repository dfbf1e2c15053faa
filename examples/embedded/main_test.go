package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

func TestEmbeddedAppServesBothRoutes(t *testing.T) {
	a := newApp("embedded-test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	ts := httptest.NewServer(a.mux)
	defer ts.Close()
	defer func() { _ = a.ws.Shutdown(context.Background()) }()

	// The application's own route still answers.
	resp, err := http.Get(ts.URL + "/hello")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "own route")

	// A WebSocket client subscribes, and a server-side publish reaches it.
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", nil)
	require.NoError(t, err)
	defer ws.Close()
	require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channel":"ticks"}}`)))
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, reply, err := ws.ReadMessage()
	require.NoError(t, err)
	require.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{"channel":"ticks"}}`, string(reply))

	msgID, err := a.pubsub.Publish(context.Background(), "ticks", json.RawMessage(`{"n":1}`), 0)
	require.NoError(t, err)
	_, frame, err := ws.ReadMessage()
	require.NoError(t, err)
	var note struct {
		Method string `json:"method"`
		Params struct {
			Channel string          `json:"channel"`
			Data    json.RawMessage `json:"data"`
			MsgID   string          `json:"msg_id"`
		} `json:"params"`
	}
	require.NoError(t, json.Unmarshal(frame, &note))
	require.Equal(t, "message", note.Method)
	require.Equal(t, "ticks", note.Params.Channel)
	require.Equal(t, msgID, note.Params.MsgID)
	require.JSONEq(t, `{"n":1}`, string(note.Params.Data))
}
