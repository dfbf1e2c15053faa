package rpc_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/rpc"
)

// FuzzDecodeRequest feeds arbitrary frames through SplitBatch and then
// DecodeRequest for each element, as the server does, and also feeds the
// whole frame to DecodeRequest directly. Its seed corpus is in
// testdata/fuzz/FuzzDecodeRequest.
func FuzzDecodeRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, frame []byte) {
		req, rerr, errID := rpc.DecodeRequest(frame)
		checkDecodeOutcome(t, frame, req, rerr, errID)

		elems, isBatch, perr := rpc.SplitBatch(frame)
		if perr != nil {
			checkSplitError(t, frame, perr)
			return
		}
		checkSplit(t, frame, elems, isBatch)

		for _, elem := range elems {
			req, rerr, errID := rpc.DecodeRequest(elem)
			checkDecodeOutcome(t, elem, req, rerr, errID)
			checkAgainstOracle(t, elem, req, rerr, errID)
		}
	})
}

// isJSONSpace reports whether c is whitespace that JSON allows between
// tokens.
func isJSONSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

// trimJSON removes JSON whitespace around a value, independently of the
// package's own trimming.
func trimJSON(b []byte) []byte {
	for len(b) > 0 && isJSONSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isJSONSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// checkSplitError checks that SplitBatch rejected the frame for the right
// reason. Text that is not JSON gets -32700 and an empty array gets -32600.
func checkSplitError(t *testing.T, frame []byte, perr *rpc.Error) {
	t.Helper()
	trimmed := trimJSON(frame)
	if !json.Valid(trimmed) {
		require.Equal(t, rpc.CodeParseError, perr.Code, "frame %q", frame)
	} else {
		require.Equal(t, rpc.CodeInvalidRequest, perr.Code, "frame %q", frame)

		var elems []json.RawMessage
		require.NoError(t, json.Unmarshal(trimmed, &elems), "only an empty batch is rejected: %q", frame)
		require.Empty(t, elems, "frame %q", frame)
	}
	checkErrorEncoding(t, perr, nil)
}

// checkSplit checks that an accepted frame is valid JSON, is a batch only
// when it is a non-empty array, and has elements that are valid JSON.
func checkSplit(t *testing.T, frame []byte, elems []json.RawMessage, isBatch bool) {
	t.Helper()
	trimmed := trimJSON(frame)
	require.True(t, json.Valid(trimmed), "an invalid frame was accepted: %q", frame)
	require.NotEmpty(t, elems)
	require.Equal(t, trimmed[0] == '[', isBatch, "frame %q", frame)
	if !isBatch {
		require.Len(t, elems, 1)
		require.Equal(t, string(trimmed), string(elems[0]))
	}
	for _, elem := range elems {
		require.True(t, json.Valid(elem), "element %q of frame %q", elem, frame)
	}
}

// checkDecodeOutcome checks the properties that hold for any input. The
// result is either a request of the expected shape or an error that encodes
// to valid JSON with a null or echoed id.
func checkDecodeOutcome(t *testing.T, raw []byte, req *rpc.Request, rerr *rpc.Error, errID json.RawMessage) {
	t.Helper()
	if rerr != nil {
		require.Nil(t, req, "input %q", raw)
		checkErrorEncoding(t, rerr, errID)
		if errID != nil {
			requireIDLiteral(t, errID)
			require.True(t, bytes.Contains(raw, errID), "echoed id %q is not in input %q", errID, raw)
		}
		return
	}
	require.NotNil(t, req, "input %q", raw)
	require.Nil(t, errID)
	if req.ID != nil {
		requireIDLiteral(t, req.ID)
	}
	if req.Params != nil {
		require.Equal(t, byte('{'), req.Params[0], "params %q", req.Params)
		require.True(t, json.Valid(req.Params), "params %q", req.Params)
	}

	// The id must come back byte for byte, because clients match responses
	// by comparing ids.
	out, err := rpc.EncodeResult(req.ID, nil)
	require.NoError(t, err)
	require.Equal(t, string(orNull(req.ID)), string(responseID(t, out)))
}

// requireIDLiteral checks that id is a single JSON string or number.
func requireIDLiteral(t *testing.T, id json.RawMessage) {
	t.Helper()
	require.True(t, json.Valid(id), "id %q is not valid JSON", id)

	dec := json.NewDecoder(bytes.NewReader(id))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v))
	switch v.(type) {
	case string, json.Number:
	default:
		require.Failf(t, "id is neither a string nor a number", "id %q decodes to %T", id, v)
	}
}

// checkErrorEncoding checks that an error response is valid JSON with the
// error's code and with the id it was given, or null.
func checkErrorEncoding(t *testing.T, rerr *rpc.Error, id json.RawMessage) {
	t.Helper()
	out := rpc.EncodeError(id, rerr)
	require.True(t, json.Valid(out), "error response %q is not valid JSON", out)
	require.Equal(t, string(orNull(id)), string(responseID(t, out)))

	var resp struct {
		JSONRPC string `json:"jsonrpc"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(out, &resp))
	require.Equal(t, "2.0", resp.JSONRPC)
	require.Equal(t, rerr.Code, resp.Error.Code)
	require.Equal(t, rerr.Message, resp.Error.Message)
}

// responseID returns the raw "id" member of an encoded response.
func responseID(t *testing.T, out []byte) json.RawMessage {
	t.Helper()
	var members map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(out, &members), "response %q", out)
	id, ok := members["id"]
	require.True(t, ok, "response %q has no id", out)
	return id
}

func orNull(id json.RawMessage) json.RawMessage {
	if id == nil {
		return json.RawMessage("null")
	}
	return id
}

// oracleVerdict is the outcome that the JSON-RPC 2.0 rules require for one
// element, computed from a generic decode rather than from the package's code.
type oracleVerdict struct {
	code   int             // 0 when the element is a valid request
	id     json.RawMessage // the raw id that an error must echo, or nil
	method string
}

// judge classifies a valid JSON element by the rules of the contract.
func judge(t *testing.T, elem json.RawMessage) oracleVerdict {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(elem))
	dec.UseNumber()
	var generic any
	require.NoError(t, dec.Decode(&generic), "element %q", elem)
	obj, ok := generic.(map[string]any)
	if !ok {
		return oracleVerdict{code: rpc.CodeInvalidRequest}
	}

	// The id decides what every later error echoes.
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(elem, &raw))
	var v oracleVerdict
	if idValue, present := obj["id"]; present {
		switch idValue.(type) {
		case string, json.Number:
			v.id = trimJSON(raw["id"])
		default:
			return oracleVerdict{code: rpc.CodeInvalidRequest}
		}
	}

	method, methodIsString := obj["method"].(string)
	v.method = method
	switch params := obj["params"]; {
	case obj["jsonrpc"] != "2.0", !methodIsString:
		v.code = rpc.CodeInvalidRequest
	case params == nil:
	case isObject(params):
	case isArray(params):
		v.code = rpc.CodeInvalidParams
	default:
		v.code = rpc.CodeInvalidRequest
	}
	return v
}

func isObject(v any) bool {
	_, ok := v.(map[string]any)
	return ok
}

func isArray(v any) bool {
	_, ok := v.([]any)
	return ok
}

// checkAgainstOracle checks that DecodeRequest and the oracle agree on the
// verdict, the error code, the echoed id and the method.
func checkAgainstOracle(t *testing.T, elem json.RawMessage, req *rpc.Request, rerr *rpc.Error, errID json.RawMessage) {
	t.Helper()
	want := judge(t, elem)
	if want.code != 0 {
		require.NotNil(t, rerr, "element %q should be rejected with %d", elem, want.code)
		require.Equal(t, want.code, rerr.Code, "element %q: %s", elem, rerr.Message)
		require.Equal(t, string(want.id), string(errID), "echoed id of element %q", elem)
		if want.id == nil {
			require.Nil(t, errID)
		}
		return
	}
	require.Nil(t, rerr, "element %q should decode", elem)
	require.Equal(t, want.method, req.Method, "element %q", elem)
	require.Equal(t, string(want.id), string(req.ID), "element %q", elem)
	require.Equal(t, want.id == nil, req.IsNotification(), "element %q", elem)
}

// FuzzAppendMessage checks that the hand-written encoder of "message"
// notifications produces valid JSON that decodes to its inputs.
func FuzzAppendMessage(f *testing.F) {
	f.Add("news", []byte(`{"a":1}`), "m-1", 1, false)
	f.Add(`a"b\c`, []byte(`"x"`), "\x00\x1f\x7f", 0, true)
	f.Add("ник-😀 \u2028", []byte(" [1, null, \"\\u0000\"] "), "\u0085", -1, false)
	f.Add("", []byte(`-1.5e400`), "", 1<<40, true)

	f.Fuzz(func(t *testing.T, channel string, data []byte, msgID string, qos int, redelivered bool) {
		if !utf8.ValidString(channel) || !utf8.ValidString(msgID) || !json.Valid(data) {
			t.Skip("AppendMessage takes valid UTF-8 names and valid JSON data")
		}

		prefix := []byte("prefix")
		out := rpc.AppendMessage(prefix, channel, data, msgID, qos, redelivered)
		require.Equal(t, "prefix", string(out[:len(prefix)]))
		out = out[len(prefix):]
		require.True(t, json.Valid(out), "output %q is not valid JSON", out)

		var got wireMessage
		require.NoError(t, json.Unmarshal(out, &got))
		assert.Equal(t, "2.0", got.JSONRPC)
		assert.Equal(t, "message", got.Method)
		assert.Equal(t, channel, got.Params.Channel)
		assert.Equal(t, string(trimJSON(data)), string(got.Params.Data))
		assert.Equal(t, msgID, got.Params.MsgID)
		assert.Equal(t, qos, got.Params.QoS)
		if redelivered {
			require.NotNil(t, got.Params.Redelivered)
			assert.True(t, *got.Params.Redelivered)
		} else {
			assert.Nil(t, got.Params.Redelivered)
		}

		// No member other than those of the contract may appear.
		var params map[string]json.RawMessage
		var envelope struct {
			Params json.RawMessage `json:"params"`
		}
		require.NoError(t, json.Unmarshal(out, &envelope))
		require.NoError(t, json.Unmarshal(envelope.Params, &params))
		for name := range params {
			assert.Contains(t, []string{"channel", "data", "msg_id", "qos", "redelivered"}, name)
		}
	})
}
