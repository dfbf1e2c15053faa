package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/server"
)

// rawResponse is a response decoded with its id kept as the bytes received.
type rawResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func decodeRawResponse(t *testing.T, frame []byte) rawResponse {
	t.Helper()

	var resp rawResponse
	require.NoError(t, json.Unmarshal(frame, &resp), "the frame is not a response object: %s", frame)
	require.Equal(t, "2.0", resp.JSONRPC, "frame: %s", frame)
	return resp
}

func TestSubscribePublishRoundTrip(t *testing.T) {
	_, url := startNode(t, nil)
	publisher := dialRaw(t, url)
	other := dialRaw(t, url)

	// The results are exactly {"channel"} and {"msg_id"}.
	sub := callRaw(t, publisher, `{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channel":"news"}}`)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{"channel":"news"}}`, string(sub))
	subscribe(t, other, "news")

	pub := callRaw(t, publisher, `{"jsonrpc":"2.0","id":2,"method":"publish","params":{"channel":"news","data":{"n":1}}}`)
	resp := decodeRawResponse(t, pub)
	require.Nil(t, resp.Error, "publish failed: %s", pub)
	var result map[string]any
	require.NoError(t, json.Unmarshal(resp.Result, &result))
	require.Len(t, result, 1, "the publish result must contain only msg_id: %s", pub)
	msgID, ok := result["msg_id"].(string)
	require.True(t, ok, "msg_id is not a string: %s", pub)
	require.NotEmpty(t, msgID)

	// The publisher is subscribed, so it receives its own message; both
	// subscribers get the same notification with the same msg_id.
	want := fmt.Sprintf(`{"jsonrpc":"2.0","method":"message","params":{"channel":"news","data":{"n":1},"msg_id":%q,"qos":0}}`, msgID)
	assert.JSONEq(t, want, string(nextNotification(t, publisher).Raw))
	assert.JSONEq(t, want, string(nextNotification(t, other).Raw))
	flush(t, publisher)
	flush(t, other)
}

func TestMsgIDIdenticalForEverySubscriber(t *testing.T) {
	_, url := startNode(t, nil)
	publisher := dialRaw(t, url)
	subscribers := []*websocket.Conn{}
	for range 4 {
		ws := dialRaw(t, url)
		subscribe(t, ws, "fan")
		subscribers = append(subscribers, ws)
	}

	ids := make(map[string]bool)
	for i := range 3 {
		msgID := publish(t, publisher, "fan", fmt.Sprint(i), 0)
		require.False(t, ids[msgID], "msg_id %s was issued twice", msgID)
		ids[msgID] = true
		for _, ws := range subscribers {
			params := nextMessage(t, ws)
			assert.Equal(t, msgID, params["msg_id"])
			assert.Equal(t, float64(i), params["data"])
		}
	}
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	_, url := startNode(t, nil)
	publisher := dialRaw(t, url)
	sub := dialRaw(t, url)
	subscribe(t, sub, "a")
	subscribe(t, sub, "end")

	resp := callRaw(t, sub, `{"jsonrpc":"2.0","id":"u","method":"unsubscribe","params":{"channel":"a"}}`)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":"u","result":{"channel":"a"}}`, string(resp))

	// The message on "a" must not arrive before the one on "end", which
	// was published after it.
	publish(t, publisher, "a", `"dropped"`, 0)
	publish(t, publisher, "end", `"end"`, 0)
	params := nextMessage(t, sub)
	assert.Equal(t, "end", params["channel"])
}

func TestUnsubscribeWhenNotSubscribed(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	resp := callRaw(t, ws, `{"jsonrpc":"2.0","id":7,"method":"unsubscribe","params":{"channel":"never"}}`)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":7,"result":{"channel":"never"}}`, string(resp))
}

func TestRepeatedSubscribeDeliversOnce(t *testing.T) {
	_, url := startNode(t, nil)
	publisher := dialRaw(t, url)
	sub := dialRaw(t, url)
	subscribe(t, sub, "twice")
	subscribe(t, sub, "twice")
	subscribe(t, sub, "end")

	msgID := publish(t, publisher, "twice", `"once"`, 0)
	publish(t, publisher, "end", `"end"`, 0)

	first := nextMessage(t, sub)
	assert.Equal(t, msgID, first["msg_id"])
	second := nextMessage(t, sub)
	assert.Equal(t, "end", second["channel"], "the message on \"twice\" was delivered twice")

	// A single unsubscribe ends the subscription, because subscribing
	// again did not add a second one.
	requestOK(t, sub, "unsubscribe", map[string]any{"channel": "twice"})
	publish(t, publisher, "twice", `"after"`, 0)
	publish(t, publisher, "end", `"end"`, 0)
	assert.Equal(t, "end", nextMessage(t, sub)["channel"])
}

func TestGlobCharactersAreLiteral(t *testing.T) {
	_, url := startNode(t, nil)
	publisher := dialRaw(t, url)
	channels := []string{"a*", "ab", "a?", "a", "*", "?", "[ab]", "b", `a\b`, `a\*`, "a[b]", "a[^b]", "**"}

	// One subscriber per channel, each also subscribed to "end".
	subscribers := make(map[string]*websocket.Conn)
	for _, channel := range channels {
		ws := dialRaw(t, url)
		subscribe(t, ws, channel)
		subscribe(t, ws, "end")
		subscribers[channel] = ws
	}

	// Every channel gets one message naming it. A subscriber must see only
	// its own channel's message before the one on "end".
	for _, channel := range channels {
		data, err := json.Marshal(channel)
		require.NoError(t, err)
		publish(t, publisher, channel, string(data), 0)
	}
	publish(t, publisher, "end", `"end"`, 0)
	for _, channel := range channels {
		ws := subscribers[channel]
		own := nextMessage(t, ws)
		assert.Equal(t, channel, own["channel"], "subscriber of %q", channel)
		assert.Equal(t, channel, own["data"], "subscriber of %q", channel)
		end := nextMessage(t, ws)
		assert.Equal(t, "end", end["channel"], "subscriber of %q got a message of another channel", channel)
	}
}

func TestChannelNameRules(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	invalid := map[string]string{
		"empty":              "",
		"256 bytes":          strings.Repeat("x", 256),
		"NUL":                "a\u0000b",
		"unit separator":     "a\u001f",
		"DEL":                "a\u007fb",
		"C1 next line":       "a\u0085b",
		"C1 last":            "\u009f",
		"multibyte over 255": strings.Repeat("x", 254) + "é",
	}
	for name, channel := range invalid {
		t.Run(name, func(t *testing.T) {
			params := map[string]any{"channel": channel}
			assert.Equal(t, 1001, requestCode(t, ws, "subscribe", params))
			assert.Equal(t, 1001, requestCode(t, ws, "unsubscribe", params))
			assert.Equal(t, 1001, requestCode(t, ws, "presence.members", params))
			assert.Equal(t, 1001, requestCode(t, ws, "presence.leave", params))
			pub := map[string]any{"channel": channel, "data": 1}
			assert.Equal(t, 1001, requestCode(t, ws, "publish", pub))
			join := map[string]any{"channel": channel, "member": "m"}
			assert.Equal(t, 1001, requestCode(t, ws, "presence.join", join))
		})
	}

	valid := map[string]string{
		"255 bytes":           strings.Repeat("x", 255),
		"multibyte 255 bytes": strings.Repeat("€", 85),
		"one byte":            "x",
		"spaces and symbols":  " a b /#+:{}\"' ",
		"non-control unicode": "日本語 \u00a0 \u200b \U0001F600",
	}
	for name, channel := range valid {
		t.Run(name, func(t *testing.T) {
			subscribe(t, ws, channel)
			msgID := publish(t, ws, channel, `"payload"`, 0)
			params := nextMessage(t, ws)
			assert.Equal(t, channel, params["channel"])
			assert.Equal(t, msgID, params["msg_id"])
			result := requestOK(t, ws, "unsubscribe", map[string]any{"channel": channel})
			assert.Equal(t, map[string]any{"channel": channel}, result)
		})
	}
}

// TestChannelNameEscapedControlCharacters sends the names with JSON escapes
// written by hand, because json.Marshal would send DEL and C1 as raw bytes.
func TestChannelNameEscapedControlCharacters(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	for _, escaped := range []string{`\u0000`, `\u001f`, `\u007f`, `\u0085`, `x\ty`, `x\ny`} {
		frame := `{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channel":"` + escaped + `"}}`
		assert.Equal(t, 1001, errorCodeOf(t, call(t, ws, frame)), "channel %s", escaped)
	}
}

func TestSubscriptionCap(t *testing.T) {
	_, url := startNode(t, func(cfg *config.Node) { cfg.MaxSubscriptions = 3 })
	ws := dialRaw(t, url)
	for _, channel := range []string{"c1", "c2", "c3"} {
		subscribe(t, ws, channel)
	}

	assert.Equal(t, 1003, requestCode(t, ws, "subscribe", map[string]any{"channel": "c4"}))

	// Subscribing again to a channel already held adds nothing, so it
	// stays within the cap.
	subscribe(t, ws, "c2")

	// The rejected channel got no subscription.
	publish(t, ws, "c4", `"lost"`, 0)
	publish(t, ws, "c1", `"kept"`, 0)
	assert.Equal(t, "c1", nextMessage(t, ws)["channel"])

	// An unsubscribe frees a slot.
	requestOK(t, ws, "unsubscribe", map[string]any{"channel": "c1"})
	subscribe(t, ws, "c4")

	// The cap counts per connection.
	other := dialRaw(t, url)
	subscribe(t, other, "c5")
}

func TestPublishParamsValidation(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	cases := map[string]string{
		"no params":       `{"jsonrpc":"2.0","id":1,"method":"publish"}`,
		"missing channel": `{"jsonrpc":"2.0","id":1,"method":"publish","params":{"data":1}}`,
		"null channel":    `{"jsonrpc":"2.0","id":1,"method":"publish","params":{"channel":null,"data":1}}`,
		"numeric channel": `{"jsonrpc":"2.0","id":1,"method":"publish","params":{"channel":5,"data":1}}`,
		"missing data":    `{"jsonrpc":"2.0","id":1,"method":"publish","params":{"channel":"c"}}`,
		"qos 2":           `{"jsonrpc":"2.0","id":1,"method":"publish","params":{"channel":"c","data":1,"qos":2}}`,
		"qos string":      `{"jsonrpc":"2.0","id":1,"method":"publish","params":{"channel":"c","data":1,"qos":"1"}}`,
		"qos negative":    `{"jsonrpc":"2.0","id":1,"method":"publish","params":{"channel":"c","data":1,"qos":-1}}`,
		"qos boolean":     `{"jsonrpc":"2.0","id":1,"method":"publish","params":{"channel":"c","data":1,"qos":true}}`,
		"qos fraction":    `{"jsonrpc":"2.0","id":1,"method":"publish","params":{"channel":"c","data":1,"qos":0.5}}`,
		"positional":      `{"jsonrpc":"2.0","id":1,"method":"publish","params":["c",1]}`,
	}
	for name, frame := range cases {
		t.Run(name, func(t *testing.T) {
			resp := call(t, ws, frame)
			assert.Equal(t, -32602, errorCodeOf(t, resp))
			assert.Equal(t, float64(1), resp["id"])
		})
	}

	// None of the rejected publishes was delivered.
	subscribe(t, ws, "c")
	flush(t, ws)
}

func TestPublishDataVerbatim(t *testing.T) {
	_, url := startNode(t, nil)
	publisher := dialRaw(t, url)
	sub := dialRaw(t, url)
	subscribe(t, sub, "data")

	values := []string{
		`null`, `0`, `-1.5e3`, `12345678901234567890`, `true`, `false`,
		`""`, `"text with \"quotes\" and \\ and \u00e9 and 日本"`,
		`[]`, `[1,"a",null,{"b":[true]}]`,
		`{}`, `{"a":{"b":[1,2,{"c":null}]},"<html>":"&"}`,
		`{ "spaced" : [ 1 , 2 ] }`,
	}
	for _, data := range values {
		frame := `{"jsonrpc":"2.0","id":1,"method":"publish","params":{"channel":"data","data":` + data + `}}`
		resultOf(t, call(t, publisher, frame))
		n := nextNotification(t, sub)
		var msg struct {
			Params struct {
				Data json.RawMessage `json:"data"`
				QoS  json.RawMessage `json:"qos"`
			} `json:"params"`
		}
		require.NoError(t, json.Unmarshal(n.Raw, &msg))
		assert.JSONEq(t, data, string(msg.Params.Data), "data %s", data)
		assert.Equal(t, "0", string(msg.Params.QoS), "qos defaults to 0")
	}

	// An explicit qos 0 is the same as none.
	publish(t, publisher, "data", `"explicit"`, 0)
	params := nextMessage(t, sub)
	assert.Equal(t, float64(0), params["qos"])
	assert.NotContains(t, params, "redelivered")
}

// qos1Node starts a node with a short redelivery interval.
func qos1Node(t *testing.T, interval time.Duration, limit int) string {
	t.Helper()

	_, url := startNode(t, func(cfg *config.Node) {
		cfg.QoS1RetryInterval = interval
		cfg.QoS1RetryLimit = limit
	})
	return url
}

func TestQoS1RedeliveryUntilAck(t *testing.T) {
	url := qos1Node(t, 50*time.Millisecond, 100)
	publisher := dialRaw(t, url)
	sub := dialRaw(t, url)
	subscribe(t, sub, "q")

	msgID := publish(t, publisher, "q", `{"k":"v"}`, 1)
	first := nextMessage(t, sub)
	assert.Equal(t, msgID, first["msg_id"])
	assert.Equal(t, float64(1), first["qos"])
	assert.NotContains(t, first, "redelivered")

	// Unacked, it comes again with the same msg_id and data.
	for range 2 {
		again := nextMessage(t, sub)
		assert.Equal(t, msgID, again["msg_id"])
		assert.Equal(t, true, again["redelivered"])
		assert.Equal(t, map[string]any{"k": "v"}, again["data"])
		assert.Equal(t, float64(1), again["qos"])
		assert.Equal(t, "q", again["channel"])
	}

	// After the ack, a redelivery of the acked message would be due before
	// the second redelivery of a later unacked one, so seeing two
	// redeliveries of the later one in a row proves the first stopped.
	sendText(t, sub, `{"jsonrpc":"2.0","method":"ack","params":{"msg_id":`+quote(msgID)+`}}`)
	waitServed(t, sub)
	laterID := publish(t, publisher, "q", `"later"`, 1)
	assert.Equal(t, laterID, skipRedeliveries(t, sub, msgID)["msg_id"])
	for range 2 {
		again := nextMessage(t, sub)
		assert.Equal(t, laterID, again["msg_id"], "an acked message was redelivered")
		assert.Equal(t, true, again["redelivered"])
	}

	assert.GreaterOrEqual(t, metricValue(t, url, "wscluster_qos1_redeliveries_total", ""), float64(4))
}

func TestQoS1RetryLimit(t *testing.T) {
	url := qos1Node(t, 30*time.Millisecond, 2)
	publisher := dialRaw(t, url)
	sub := dialRaw(t, url)
	subscribe(t, sub, "q")
	require.Zero(t, metricValue(t, url, "wscluster_qos1_redeliveries_total", ""))
	require.Zero(t, metricValue(t, url, "wscluster_messages_dropped_total", `reason="qos1_retry_limit"`))

	msgID := publish(t, publisher, "q", `1`, 1)

	// The drop follows the last redelivery's interval, so once it is
	// counted every redelivery has been queued, and flush reads them all.
	waitUntil(t, "wscluster_messages_dropped_total is 1", func() bool {
		return metricValue(t, url, "wscluster_messages_dropped_total", `reason="qos1_retry_limit"`) == 1
	})
	sendText(t, sub, `{"jsonrpc":"2.0","id":"done","method":"presence.members","params":{"channel":"flush"}}`)

	deliveries, redeliveries := 0, 0
	for {
		frame := nextFrame(t, sub)
		if !isNotification(frame) {
			assert.Equal(t, "done", decodeRawResponseID(t, frame))
			break
		}
		var n struct {
			Params map[string]any `json:"params"`
		}
		require.NoError(t, json.Unmarshal(frame, &n))
		assert.Equal(t, msgID, n.Params["msg_id"])
		if n.Params["redelivered"] == true {
			redeliveries++
		} else {
			deliveries++
		}
	}
	assert.Equal(t, 1, deliveries)
	assert.Equal(t, 2, redeliveries, "QoS1RetryLimit 2 must mean exactly two redeliveries")
	assert.Equal(t, float64(2), metricValue(t, url, "wscluster_qos1_redeliveries_total", ""))
	assert.Equal(t, float64(1), metricValue(t, url, "wscluster_messages_dropped_total", `reason="qos1_retry_limit"`))
}

// skipRedeliveries returns the next message that is not a redelivery of
// msgID. A redelivery that the server had queued before it read the ack of
// msgID may still arrive after the ack, so those are skipped.
func skipRedeliveries(t *testing.T, ws *websocket.Conn, msgID string) map[string]any {
	t.Helper()

	for {
		params := nextMessage(t, ws)
		if params["msg_id"] != msgID {
			return params
		}
		require.Equal(t, true, params["redelivered"], "msg_id %s was delivered twice without the redelivered flag", msgID)
	}
}

func decodeRawResponseID(t *testing.T, frame []byte) string {
	t.Helper()

	var id string
	require.NoError(t, json.Unmarshal(decodeRawResponse(t, frame).ID, &id), "frame: %s", frame)
	return id
}

func TestQoS1RetryLimitZeroMeansNoRedelivery(t *testing.T) {
	url := qos1Node(t, 20*time.Millisecond, 0)
	publisher := dialRaw(t, url)
	sub := dialRaw(t, url)
	subscribe(t, sub, "q")

	publish(t, publisher, "q", `1`, 1)
	waitUntil(t, "wscluster_messages_dropped_total is 1", func() bool {
		return metricValue(t, url, "wscluster_messages_dropped_total", `reason="qos1_retry_limit"`) == 1
	})
	assert.Equal(t, float64(1), nextMessage(t, sub)["qos"])
	flush(t, sub)
	assert.Zero(t, metricValue(t, url, "wscluster_qos1_redeliveries_total", ""))
}

func TestAckWithID(t *testing.T) {
	url := qos1Node(t, 50*time.Millisecond, 100)
	publisher := dialRaw(t, url)
	sub := dialRaw(t, url)
	subscribe(t, sub, "q")

	// An ack sent as a request gets a success response echoing its id.
	msgID := publish(t, publisher, "q", `"a"`, 1)
	assert.Equal(t, msgID, nextMessage(t, sub)["msg_id"])
	resp := call(t, sub, `{"jsonrpc":"2.0","id":"ack-1","method":"ack","params":{"msg_id":`+quote(msgID)+`}}`)
	resultOf(t, resp)
	assert.Equal(t, "ack-1", resp["id"])

	// The acked message is not redelivered: the later one's two
	// redeliveries come first.
	laterID := publish(t, publisher, "q", `"b"`, 1)
	assert.Equal(t, laterID, skipRedeliveries(t, sub, msgID)["msg_id"])
	for range 2 {
		assert.Equal(t, laterID, nextMessage(t, sub)["msg_id"], "an acked message was redelivered")
	}

	// An ack of an unknown msg_id is harmless; one without msg_id is
	// invalid.
	resultOf(t, call(t, sub, `{"jsonrpc":"2.0","id":2,"method":"ack","params":{"msg_id":"unknown"}}`))
	assert.Equal(t, -32602, errorCodeOf(t, call(t, sub, `{"jsonrpc":"2.0","id":3,"method":"ack","params":{}}`)))
}

func TestAckNotificationGetsNoReply(t *testing.T) {
	url := qos1Node(t, time.Hour, 5)
	publisher := dialRaw(t, url)
	sub := dialRaw(t, url)
	subscribe(t, sub, "q")

	msgID := publish(t, publisher, "q", `"a"`, 1)
	assert.Equal(t, msgID, nextMessage(t, sub)["msg_id"])
	sendText(t, sub, `{"jsonrpc":"2.0","method":"ack","params":{"msg_id":`+quote(msgID)+`}}`)
	sendText(t, sub, `{"jsonrpc":"2.0","method":"ack","params":{}}`)
	flush(t, sub)
}

// TestUnackedLimitClosesSlowConsumer leaves 1,000 QoS 1 messages unacked,
// which is allowed, and then one more, which closes the connection.
func TestUnackedLimitClosesSlowConsumer(t *testing.T) {
	url := qos1Node(t, time.Hour, 5)
	publisher := dialRaw(t, url)
	sub := dialRaw(t, url)
	subscribe(t, sub, "q")

	publishBatch(t, publisher, "q", 0, 500)
	publishBatch(t, publisher, "q", 500, 1000)
	for i := range 1000 {
		assert.Equal(t, float64(i), nextMessage(t, sub)["data"])
	}
	flush(t, sub)

	publishBatch(t, publisher, "q", 1000, 1001)
	assert.Equal(t, 4008, readCloseCode(t, sub))
	waitUntil(t, "wscluster_slow_consumer_closes_total is 1", func() bool {
		return metricValue(t, url, "wscluster_slow_consumer_closes_total", "") == 1
	})

	// Other connections go on working.
	subscribe(t, publisher, "q")
	publish(t, publisher, "q", `"still here"`, 0)
	assert.Equal(t, "still here", nextMessage(t, publisher)["data"])
}

// publishBatch publishes the numbers from..to-1 as QoS 1 messages in one
// batch and checks that every publish succeeded.
func publishBatch(t *testing.T, ws *websocket.Conn, channel string, from, to int) {
	t.Helper()

	items := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		items = append(items, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"publish","params":{"channel":%q,"data":%d,"qos":1}}`, i, channel, i))
	}
	frame := callRaw(t, ws, "["+strings.Join(items, ",")+"]")
	var responses []rawResponse
	require.NoError(t, json.Unmarshal(frame, &responses), "the batch response is not an array")
	require.Len(t, responses, to-from)
	for _, resp := range responses {
		require.Nil(t, resp.Error, "a publish in the batch failed: id %s", resp.ID)
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestParseErrorHasNullID(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	for _, frame := range []string{`{"jsonrpc":"2.0","id":1`, `not json`, `{"id":1,}`, `[1,2`, ` `} {
		resp := decodeRawResponse(t, callRaw(t, ws, frame))
		require.NotNil(t, resp.Error, "frame %q", frame)
		assert.Equal(t, -32700, resp.Error.Code, "frame %q", frame)
		assert.Equal(t, "null", string(resp.ID), "frame %q", frame)
	}
	flush(t, ws)
}

func TestInvalidRequests(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	cases := []struct {
		name  string
		frame string
		code  int
		id    string
	}{
		{"missing jsonrpc", `{"id":7,"method":"subscribe","params":{"channel":"c"}}`, -32600, `7`},
		{"jsonrpc 1.0", `{"jsonrpc":"1.0","id":"a","method":"subscribe","params":{"channel":"c"}}`, -32600, `"a"`},
		{"jsonrpc number", `{"jsonrpc":2.0,"id":8,"method":"subscribe","params":{"channel":"c"}}`, -32600, `8`},
		{"method number", `{"jsonrpc":"2.0","id":9,"method":5}`, -32600, `9`},
		{"method missing", `{"jsonrpc":"2.0","id":10}`, -32600, `10`},
		{"method null", `{"jsonrpc":"2.0","id":11,"method":null}`, -32600, `11`},
		{"unknown method", `{"jsonrpc":"2.0","id":12,"method":"nope","params":{}}`, -32601, `12`},
		{"unknown method no params", `{"jsonrpc":"2.0","id":"s","method":"nope"}`, -32601, `"s"`},
		{"positional params", `{"jsonrpc":"2.0","id":13,"method":"subscribe","params":["c"]}`, -32602, `13`},
		{"params number", `{"jsonrpc":"2.0","id":14,"method":"subscribe","params":5}`, -32600, `14`},
		{"params string", `{"jsonrpc":"2.0","id":15,"method":"subscribe","params":"c"}`, -32600, `15`},
		{"id null", `{"jsonrpc":"2.0","id":null,"method":"subscribe","params":{"channel":"c"}}`, -32600, `null`},
		{"id object", `{"jsonrpc":"2.0","id":{},"method":"subscribe","params":{"channel":"c"}}`, -32600, `null`},
		{"id array", `{"jsonrpc":"2.0","id":[1],"method":"subscribe","params":{"channel":"c"}}`, -32600, `null`},
		{"id boolean", `{"jsonrpc":"2.0","id":true,"method":"subscribe","params":{"channel":"c"}}`, -32600, `null`},
		{"number frame", `5`, -32600, `null`},
		{"string frame", `"subscribe"`, -32600, `null`},
		{"null frame", `null`, -32600, `null`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := decodeRawResponse(t, callRaw(t, ws, tc.frame))
			require.NotNil(t, resp.Error, "expected an error")
			assert.Equal(t, tc.code, resp.Error.Code)
			assert.NotEmpty(t, resp.Error.Message)
			assert.Equal(t, tc.id, string(resp.ID))
			assert.Nil(t, resp.Result)
		})
	}

	// The connection stays open after every bad request.
	subscribe(t, ws, "c")
	flush(t, ws)
}

func TestIDEchoedExactly(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	for _, id := range []string{
		`"abc"`, `""`, `"with \"escapes\" \\ \u00e9 日本"`,
		`"<a&b>"`, `"\u00e9\/"`,
		`0`, `-1`, `1.5e3`, `1.50`, `-0`, `1E+2`, `12345678901234567890123`, `0.000001`,
	} {
		for _, method := range []string{"presence.members", "nope"} {
			frame := `{"jsonrpc":"2.0","id":` + id + `,"method":"` + method + `","params":{"channel":"c"}}`
			resp := decodeRawResponse(t, callRaw(t, ws, frame))
			assert.Equal(t, id, string(resp.ID), "method %s", method)
		}
	}
}

func TestNotificationIsCarriedOutWithoutReply(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)
	subscribe(t, ws, "n")

	sendText(t, ws, `{"jsonrpc":"2.0","method":"publish","params":{"channel":"n","data":"quiet"}}`)
	assert.Equal(t, "quiet", nextMessage(t, ws)["data"])
	flush(t, ws)

	// A subscribe notification takes effect too.
	sendText(t, ws, `{"jsonrpc":"2.0","method":"subscribe","params":{"channel":"m"}}`)
	sendText(t, ws, `{"jsonrpc":"2.0","method":"publish","params":{"channel":"m","data":"m"}}`)
	assert.Equal(t, "m", nextMessage(t, ws)["data"])
	flush(t, ws)
}

func TestNotificationErrorsGetNoReply(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	for _, frame := range []string{
		`{"jsonrpc":"2.0","method":"nope"}`,
		`{"jsonrpc":"2.0","method":"nope","params":{}}`,
		`{"jsonrpc":"2.0","method":"publish","params":{"channel":"c"}}`,
		`{"jsonrpc":"2.0","method":"subscribe","params":{"channel":""}}`,
		`{"jsonrpc":"2.0","method":"presence.join","params":{"channel":"c"}}`,
	} {
		sendText(t, ws, frame)
	}
	flush(t, ws)
}

func TestBatchMixed(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	frame := callRaw(t, ws, `[
		{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channel":"b"}},
		{"jsonrpc":"2.0","method":"publish","params":{"channel":"b","data":"from notification"}},
		{"jsonrpc":"2.0","method":"nope"},
		{"jsonrpc":"2.0","id":"two","method":"presence.members","params":{"channel":"b"}},
		5,
		{"jsonrpc":"2.0","id":3,"method":"nope"},
		{"jsonrpc":"2.0","id":4,"method":"publish","params":{"channel":"b","data":"from request"}}
	]`)

	var responses []rawResponse
	require.NoError(t, json.Unmarshal(frame, &responses), "the batch response is not an array: %s", frame)
	require.Len(t, responses, 5, "frame: %s", frame)
	ids := []string{`1`, `"two"`, `null`, `3`, `4`}
	for i, id := range ids {
		assert.Equal(t, id, string(responses[i].ID), "response %d", i)
	}
	assert.JSONEq(t, `{"channel":"b"}`, string(responses[0].Result))
	assert.JSONEq(t, `{"channel":"b","members":[]}`, string(responses[1].Result))
	require.NotNil(t, responses[2].Error)
	assert.Equal(t, -32600, responses[2].Error.Code)
	require.NotNil(t, responses[3].Error)
	assert.Equal(t, -32601, responses[3].Error.Code)
	assert.Nil(t, responses[4].Error)

	// Both publishes of the batch were carried out.
	assert.Equal(t, "from notification", nextMessage(t, ws)["data"])
	assert.Equal(t, "from request", nextMessage(t, ws)["data"])
	flush(t, ws)
}

func TestBatchOfNotificationsGetsNoFrame(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	sendText(t, ws, `[{"jsonrpc":"2.0","method":"subscribe","params":{"channel":"x"}},{"jsonrpc":"2.0","method":"nope"}]`)
	flush(t, ws)

	// The subscribe notification of the batch took effect.
	sendText(t, ws, `[{"jsonrpc":"2.0","method":"publish","params":{"channel":"x","data":1}}]`)
	assert.Equal(t, float64(1), nextMessage(t, ws)["data"])
	flush(t, ws)
}

func TestEmptyBatchIsInvalidRequest(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	for _, frame := range []string{`[]`, ` [ ] `} {
		resp := decodeRawResponse(t, callRaw(t, ws, frame))
		require.NotNil(t, resp.Error, "frame %q", frame)
		assert.Equal(t, -32600, resp.Error.Code)
		assert.Equal(t, "null", string(resp.ID))
	}
	flush(t, ws)
}

func TestBatchOfInvalidElements(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	frame := callRaw(t, ws, `[1,{"jsonrpc":"1.0","id":2,"method":"x"},[],{"jsonrpc":"2.0","id":3,"method":"subscribe","params":[]}]`)
	var responses []rawResponse
	require.NoError(t, json.Unmarshal(frame, &responses), "the batch response is not an array: %s", frame)
	require.Len(t, responses, 4)
	wantIDs := []string{`null`, `2`, `null`, `3`}
	wantCodes := []int{-32600, -32600, -32600, -32602}
	for i := range responses {
		require.NotNil(t, responses[i].Error, "response %d", i)
		assert.Equal(t, wantCodes[i], responses[i].Error.Code, "response %d", i)
		assert.Equal(t, wantIDs[i], string(responses[i].ID), "response %d", i)
	}
	flush(t, ws)
}

// TestPositionalParamsNotificationGetsNoReply sends a notification with
// positional params. JSON-RPC 2.0 allows them, so the request object is
// valid, and the server must not reply to a notification even when its
// params are rejected.
func TestPositionalParamsNotificationGetsNoReply(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	sendText(t, ws, `{"jsonrpc":"2.0","method":"subscribe","params":["c"]}`)
	sendText(t, ws, `[{"jsonrpc":"2.0","method":"subscribe","params":["c"]}]`)
	flush(t, ws)
}

// TestConcurrentFirstDials opens the first connections of a node at the
// same time. Run it with -race: the connections share one wsconn.Config.
func TestConcurrentFirstDials(t *testing.T) {
	_, url := startColdNode(t, nil)

	// The dials run in parallel so that the server sets the connections
	// up at the same time.
	const dials = 8
	conns := make([]*websocket.Conn, dials)
	errs := make([]error, dials)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			dialer := websocket.Dialer{Subprotocols: []string{server.Subprotocol}, HandshakeTimeout: waitTimeout}
			var resp *http.Response
			conns[i], resp, errs[i] = dialer.Dial(url, nil)
			if resp != nil {
				_ = resp.Body.Close()
			}
		})
	}
	wg.Wait()
	for i, ws := range conns {
		require.NoError(t, errs[i])
		t.Cleanup(func() { _ = ws.Close() })
	}

	for _, ws := range conns {
		sendText(t, ws, `{"jsonrpc":"2.0","id":1,"method":"presence.members","params":{"channel":"c"}}`)
	}
	for _, ws := range conns {
		resp := decodeRawResponse(t, readWire(t, ws))
		assert.Equal(t, "1", string(resp.ID))
	}
}

// TestParamsMemberNamesAreCaseSensitive checks that params members match by
// exact name, as JSON object member names are case-sensitive.
func TestParamsMemberNamesAreCaseSensitive(t *testing.T) {
	_, url := startNode(t, nil)
	ws := dialRaw(t, url)

	assert.Equal(t, -32602, requestCode(t, ws, "subscribe", map[string]any{"CHANNEL": "d"}))
	assert.Equal(t, -32602, requestCode(t, ws, "presence.members", map[string]any{"Channel": "d"}))

	frame := callRaw(t, ws, `{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channel":"c","Channel":"d"}}`)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{"channel":"c"}}`, string(frame))
}
