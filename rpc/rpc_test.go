package rpc_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/rpc"
)

// decodeCase is one DecodeRequest input and its expected outcome. A wantCode
// of 0 means the request must decode. wantID is the raw id expected on the
// request or on the error, and "" means none (nil).
type decodeCase struct {
	name       string
	input      string
	wantCode   int
	wantID     string
	wantMethod string
	wantParams string
}

var validDecodeCases = []decodeCase{
	{name: "number id", input: `{"jsonrpc":"2.0","method":"subscribe","params":{"channel":"a"},"id":1}`, wantID: `1`, wantMethod: "subscribe", wantParams: `{"channel":"a"}`},
	{name: "string id", input: `{"jsonrpc":"2.0","method":"publish","id":"abc"}`, wantID: `"abc"`, wantMethod: "publish"},
	{name: "notification", input: `{"jsonrpc":"2.0","method":"ack","params":{"msg_id":"m1"}}`, wantMethod: "ack", wantParams: `{"msg_id":"m1"}`},
	{name: "null params", input: `{"jsonrpc":"2.0","method":"m","params":null,"id":2}`, wantID: `2`, wantMethod: "m"},
	{name: "empty params object", input: `{"jsonrpc":"2.0","method":"m","params":{},"id":2}`, wantID: `2`, wantMethod: "m", wantParams: `{}`},
	{name: "whitespace everywhere", input: " \t\r\n{ \"jsonrpc\" : \"2.0\" , \"id\" : 3 , \"method\" : \"m\" , \"params\" : { \"a\" : 1 } }\n", wantID: `3`, wantMethod: "m", wantParams: `{ "a" : 1 }`},
	{name: "huge integer id", input: `{"jsonrpc":"2.0","method":"m","id":123456789012345678901234567890}`, wantID: `123456789012345678901234567890`, wantMethod: "m"},
	{name: "float id beyond float64", input: `{"jsonrpc":"2.0","method":"m","id":-1.5e400}`, wantID: `-1.5e400`, wantMethod: "m"},
	{name: "zero id", input: `{"jsonrpc":"2.0","method":"m","id":0}`, wantID: `0`, wantMethod: "m"},
	{name: "empty string id", input: `{"jsonrpc":"2.0","method":"m","id":""}`, wantID: `""`, wantMethod: "m"},
	{name: "escaped id kept raw", input: `{"jsonrpc":"2.0","method":"m","id":"a\"b\\c\u00e9"}`, wantID: `"a\"b\\c\u00e9"`, wantMethod: "m"},
	{name: "html characters in id", input: `{"jsonrpc":"2.0","method":"m","id":"<a&b>"}`, wantID: `"<a&b>"`, wantMethod: "m"},
	{name: "unicode id and method", input: `{"jsonrpc":"2.0","method":"проверка✓","id":"ид-😀"}`, wantID: `"ид-😀"`, wantMethod: "проверка✓"},
	{name: "escaped jsonrpc version", input: `{"jsonrpc":"2\u002e0","method":"m","id":1}`, wantID: `1`, wantMethod: "m"},
	{name: "escaped method", input: `{"jsonrpc":"2.0","method":"pub\u006cish","id":1}`, wantID: `1`, wantMethod: "publish"},
	{name: "empty method", input: `{"jsonrpc":"2.0","method":"","id":1}`, wantID: `1`, wantMethod: ""},
	{name: "unknown members ignored", input: `{"jsonrpc":"2.0","method":"m","id":1,"extra":[1,2]}`, wantID: `1`, wantMethod: "m"},
}

var invalidDecodeCases = []decodeCase{
	{name: "empty input", input: ``, wantCode: rpc.CodeInvalidRequest},
	{name: "array", input: `[{"jsonrpc":"2.0","method":"m","id":1}]`, wantCode: rpc.CodeInvalidRequest},
	{name: "string", input: `"request"`, wantCode: rpc.CodeInvalidRequest},
	{name: "number", input: `42`, wantCode: rpc.CodeInvalidRequest},
	{name: "null", input: `null`, wantCode: rpc.CodeInvalidRequest},
	{name: "unicode space before object", input: "\u00a0{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1}", wantCode: rpc.CodeInvalidRequest},
	{name: "truncated object", input: `{"jsonrpc":"2.0","id":1`, wantCode: rpc.CodeParseError},
	{name: "trailing garbage", input: `{"jsonrpc":"2.0","method":"m","id":1} x`, wantCode: rpc.CodeParseError},
	{name: "null id", input: `{"jsonrpc":"2.0","method":"m","id":null}`, wantCode: rpc.CodeInvalidRequest},
	{name: "boolean id", input: `{"jsonrpc":"2.0","method":"m","id":true}`, wantCode: rpc.CodeInvalidRequest},
	{name: "object id", input: `{"jsonrpc":"2.0","method":"m","id":{"a":1}}`, wantCode: rpc.CodeInvalidRequest},
	{name: "array id", input: `{"jsonrpc":"2.0","method":"m","id":[1]}`, wantCode: rpc.CodeInvalidRequest},
	{name: "bad id before bad version", input: `{"method":"m","id":false}`, wantCode: rpc.CodeInvalidRequest},
	{name: "missing jsonrpc", input: `{"method":"m","id":7}`, wantCode: rpc.CodeInvalidRequest, wantID: `7`},
	{name: "wrong jsonrpc", input: `{"jsonrpc":"1.0","method":"m","id":"x"}`, wantCode: rpc.CodeInvalidRequest, wantID: `"x"`},
	{name: "numeric jsonrpc", input: `{"jsonrpc":2.0,"method":"m","id":7}`, wantCode: rpc.CodeInvalidRequest, wantID: `7`},
	{name: "null jsonrpc", input: `{"jsonrpc":null,"method":"m","id":7}`, wantCode: rpc.CodeInvalidRequest, wantID: `7`},
	{name: "jsonrpc with spaces", input: `{"jsonrpc":" 2.0","method":"m","id":7}`, wantCode: rpc.CodeInvalidRequest, wantID: `7`},
	{name: "missing method", input: `{"jsonrpc":"2.0","id":7}`, wantCode: rpc.CodeInvalidRequest, wantID: `7`},
	{name: "null method", input: `{"jsonrpc":"2.0","method":null,"id":7}`, wantCode: rpc.CodeInvalidRequest, wantID: `7`},
	{name: "numeric method", input: `{"jsonrpc":"2.0","method":5,"id":7}`, wantCode: rpc.CodeInvalidRequest, wantID: `7`},
	{name: "object method", input: `{"jsonrpc":"2.0","method":{},"id":7}`, wantCode: rpc.CodeInvalidRequest, wantID: `7`},
	{name: "method without id", input: `{"jsonrpc":"2.0","method":[]}`, wantCode: rpc.CodeInvalidRequest},
	{name: "uppercase member names", input: `{"JSONRPC":"2.0","Method":"m","ID":7}`, wantCode: rpc.CodeInvalidRequest},
	{name: "uppercase method member", input: `{"jsonrpc":"2.0","Method":"m","id":7}`, wantCode: rpc.CodeInvalidRequest, wantID: `7`},
	{name: "positional params", input: `{"jsonrpc":"2.0","method":"m","params":[1,2],"id":7}`, wantCode: rpc.CodeInvalidParams, wantID: `7`},
	{name: "string params", input: `{"jsonrpc":"2.0","method":"m","params":"a","id":"s"}`, wantCode: rpc.CodeInvalidRequest, wantID: `"s"`},
	{name: "number params", input: `{"jsonrpc":"2.0","method":"m","params":1,"id":7}`, wantCode: rpc.CodeInvalidRequest, wantID: `7`},
	{name: "boolean params", input: `{"jsonrpc":"2.0","method":"m","params":false,"id":7}`, wantCode: rpc.CodeInvalidRequest, wantID: `7`},
}

func TestDecodeRequestValid(t *testing.T) {
	for _, tc := range validDecodeCases {
		t.Run(tc.name, func(t *testing.T) {
			req, rerr, errID := rpc.DecodeRequest(json.RawMessage(tc.input))
			require.Nil(t, rerr)
			require.NotNil(t, req)
			assert.Nil(t, errID)
			assert.Equal(t, tc.wantMethod, req.Method)
			assert.Equal(t, tc.wantID == "", req.IsNotification())
			assertRaw(t, tc.wantID, req.ID, "id")
			assertRaw(t, tc.wantParams, req.Params, "params")
		})
	}
}

func TestDecodeRequestInvalid(t *testing.T) {
	for _, tc := range invalidDecodeCases {
		t.Run(tc.name, func(t *testing.T) {
			req, rerr, errID := rpc.DecodeRequest(json.RawMessage(tc.input))
			require.NotNil(t, rerr)
			assert.Nil(t, req)
			assert.Equal(t, tc.wantCode, rerr.Code, "message: %s", rerr.Message)
			assert.NotEmpty(t, rerr.Message)
			assertRaw(t, tc.wantID, errID, "echoed id")
		})
	}
}

// assertRaw checks a raw JSON value against want, where "" stands for nil.
func assertRaw(t *testing.T, want string, got json.RawMessage, label string) {
	t.Helper()
	if want == "" {
		assert.Nil(t, got, "%s should be nil, got %s", label, got)
		return
	}
	assert.Equal(t, want, string(got), label)
}

func TestSplitBatchSingle(t *testing.T) {
	cases := map[string]struct{ frame, want string }{
		"object":           {frame: `{"jsonrpc":"2.0","method":"m"}`, want: `{"jsonrpc":"2.0","method":"m"}`},
		"object in spaces": {frame: " \n{\"a\":1}\t\r ", want: `{"a":1}`},
		"scalar":           {frame: `42`, want: `42`},
		"string":           {frame: `"[not a batch]"`, want: `"[not a batch]"`},
		"null":             {frame: `null`, want: `null`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			elems, isBatch, perr := rpc.SplitBatch([]byte(tc.frame))
			require.Nil(t, perr)
			assert.False(t, isBatch)
			require.Len(t, elems, 1)
			assert.Equal(t, tc.want, string(elems[0]))
		})
	}
}

func TestSplitBatchBatch(t *testing.T) {
	frame := ` [ {"jsonrpc":"2.0","method":"a","id":1}, {"jsonrpc":"2.0","method":"b"} , 3, [ ] ] `
	elems, isBatch, perr := rpc.SplitBatch([]byte(frame))
	require.Nil(t, perr)
	assert.True(t, isBatch)
	require.Len(t, elems, 4)
	assert.Equal(t, `{"jsonrpc":"2.0","method":"a","id":1}`, string(elems[0]))
	assert.Equal(t, `{"jsonrpc":"2.0","method":"b"}`, string(elems[1]))
	assert.Equal(t, `3`, string(elems[2]))
	assert.Equal(t, `[ ]`, string(elems[3]))

	// Each element of a batch decodes on its own, and a bad one does not
	// spoil the others.
	req, rerr, _ := rpc.DecodeRequest(elems[0])
	require.Nil(t, rerr)
	assert.Equal(t, "a", req.Method)
	_, rerr, _ = rpc.DecodeRequest(elems[2])
	require.NotNil(t, rerr)
	assert.Equal(t, rpc.CodeInvalidRequest, rerr.Code)
}

func TestSplitBatchErrors(t *testing.T) {
	cases := map[string]struct {
		frame string
		code  int
	}{
		"empty frame":           {frame: ``, code: rpc.CodeParseError},
		"only whitespace":       {frame: " \n\t", code: rpc.CodeParseError},
		"truncated object":      {frame: `{"jsonrpc":"2.0"`, code: rpc.CodeParseError},
		"truncated batch":       {frame: `[{"jsonrpc":"2.0"},`, code: rpc.CodeParseError},
		"two values":            {frame: `{} {}`, code: rpc.CodeParseError},
		"single quotes":         {frame: `{'a':1}`, code: rpc.CodeParseError},
		"unicode space prefix":  {frame: "\u00a0{}", code: rpc.CodeParseError},
		"unicode space suffix":  {frame: "{}\u2003", code: rpc.CodeParseError},
		"nesting beyond limit":  {frame: strings.Repeat("[", 10001) + strings.Repeat("]", 10001), code: rpc.CodeParseError},
		"empty batch":           {frame: `[]`, code: rpc.CodeInvalidRequest},
		"empty batch in spaces": {frame: " [ \n ] ", code: rpc.CodeInvalidRequest},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			elems, isBatch, perr := rpc.SplitBatch([]byte(tc.frame))
			require.NotNil(t, perr)
			assert.Equal(t, tc.code, perr.Code, "message: %s", perr.Message)
			assert.Nil(t, elems)
			assert.False(t, isBatch)
		})
	}
}

func TestSplitBatchDeepNesting(t *testing.T) {
	// A deeply nested but valid params object reaches DecodeRequest intact.
	depth := 5000
	params := strings.Repeat(`{"a":`, depth) + `1` + strings.Repeat(`}`, depth)
	frame := `[{"jsonrpc":"2.0","method":"m","id":1,"params":` + params + `}]`

	elems, isBatch, perr := rpc.SplitBatch([]byte(frame))
	require.Nil(t, perr)
	require.True(t, isBatch)
	require.Len(t, elems, 1)

	req, rerr, _ := rpc.DecodeRequest(elems[0])
	require.Nil(t, rerr)
	assert.Equal(t, params, string(req.Params))
}

func TestEncodeResult(t *testing.T) {
	cases := map[string]struct {
		id     json.RawMessage
		result any
		want   string
	}{
		"nil id":       {id: nil, result: 1, want: `{"jsonrpc":"2.0","id":null,"result":1}`},
		"number id":    {id: json.RawMessage(`7`), result: map[string]string{"channel": "a"}, want: `{"jsonrpc":"2.0","id":7,"result":{"channel":"a"}}`},
		"huge id":      {id: json.RawMessage(`123456789012345678901234567890`), result: nil, want: `{"jsonrpc":"2.0","id":123456789012345678901234567890,"result":null}`},
		"exponent id":  {id: json.RawMessage(`-1.5E+400`), result: true, want: `{"jsonrpc":"2.0","id":-1.5E+400,"result":true}`},
		"escaped id":   {id: json.RawMessage(`"a\"b\\c\u00e9"`), result: "ok", want: `{"jsonrpc":"2.0","id":"a\"b\\c\u00e9","result":"ok"}`},
		"html id":      {id: json.RawMessage(`"<a&b>"`), result: "<&>", want: `{"jsonrpc":"2.0","id":"<a&b>","result":"<&>"}`},
		"unicode id":   {id: json.RawMessage(`"ид-😀"`), result: struct{}{}, want: `{"jsonrpc":"2.0","id":"ид-😀","result":{}}`},
		"raw result":   {id: json.RawMessage(`"r"`), result: json.RawMessage(`{"msg_id":"m1"}`), want: `{"jsonrpc":"2.0","id":"r","result":{"msg_id":"m1"}}`},
		"nested value": {id: json.RawMessage(`1`), result: []any{1, "two", nil}, want: `{"jsonrpc":"2.0","id":1,"result":[1,"two",null]}`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := rpc.EncodeResult(tc.id, tc.result)
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(out))
			assert.True(t, json.Valid(out))
		})
	}
}

func TestEncodeResultUnsupported(t *testing.T) {
	out, err := rpc.EncodeResult(json.RawMessage(`1`), func() {})
	require.Error(t, err)
	assert.Nil(t, out)

	var typeErr *json.UnsupportedTypeError
	assert.ErrorAs(t, err, &typeErr)
}

func TestEncodeError(t *testing.T) {
	cases := map[string]struct {
		id   json.RawMessage
		err  *rpc.Error
		want string
	}{
		"nil id": {
			err:  &rpc.Error{Code: rpc.CodeParseError, Message: "parse error"},
			want: `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`,
		},
		"number id": {
			id:   json.RawMessage(`42`),
			err:  rpc.Errorf(rpc.CodeMethodNotFound, "method not found: %q", "x"),
			want: `{"jsonrpc":"2.0","id":42,"error":{"code":-32601,"message":"method not found: \"x\""}}`,
		},
		"html id and message": {
			id:   json.RawMessage(`"<i&d>"`),
			err:  &rpc.Error{Code: rpc.CodeInvalidChannel, Message: "bad <channel> & more"},
			want: `{"jsonrpc":"2.0","id":"<i&d>","error":{"code":1001,"message":"bad <channel> & more"}}`,
		},
		"with data": {
			id:   json.RawMessage(`"a"`),
			err:  &rpc.Error{Code: rpc.CodeInvalidParams, Message: "m", Data: map[string]int{"limit": 3}},
			want: `{"jsonrpc":"2.0","id":"a","error":{"code":-32602,"message":"m","data":{"limit":3}}}`,
		},
		"data that cannot be encoded": {
			id:   json.RawMessage(`1`),
			err:  &rpc.Error{Code: rpc.CodeInternalError, Message: "m", Data: make(chan int)},
			want: `{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"m"}}`,
		},
		"id that is not JSON": {
			id:   json.RawMessage(`{oops`),
			err:  &rpc.Error{Code: rpc.CodeInvalidRequest, Message: "m"},
			want: `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"m"}}`,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out := rpc.EncodeError(tc.id, tc.err)
			assert.Equal(t, tc.want, string(out))
			assert.True(t, json.Valid(out))
		})
	}
}

func TestErrorImplementsError(t *testing.T) {
	var err error = rpc.Errorf(rpc.CodeNotAuthorized, "not authorized on %q", "ch")
	assert.Equal(t, `json-rpc error 1006: not authorized on "ch"`, err.Error())
}

func TestEncodeNotification(t *testing.T) {
	out, err := rpc.EncodeNotification("presence.leave", map[string]string{"channel": "<c>", "member": "m"})
	require.NoError(t, err)
	assert.Equal(t, `{"jsonrpc":"2.0","method":"presence.leave","params":{"channel":"<c>","member":"m"}}`, string(out))
}

// trickyStrings contains names that AppendString must escape or pass through
// unchanged.
var trickyStrings = []string{
	"",
	"plain",
	`quote " inside`,
	`back\slash and \" both`,
	"\x00\x01\x02\x1f control bytes",
	"tab\tnewline\ncarriage\r",
	"del \x7f and c1 \u0085\u009f",
	"multibyte é ü ß 中文 😀",
	"separators \u2028 \u2029",
	"html <a href=\"x\">&amp;</a>",
	`glob *?[]{}\`,
	"\\u0041 is not an escape here",
}

func TestAppendString(t *testing.T) {
	for _, s := range trickyStrings {
		out := rpc.AppendString(nil, s)
		require.True(t, json.Valid(out), "output %q is not valid JSON", out)

		var got string
		require.NoError(t, json.Unmarshal(out, &got))
		assert.Equal(t, s, got)
	}
}

func TestAppendStringEveryControlByte(t *testing.T) {
	var sb strings.Builder
	for c := byte(0); c < 0x20; c++ {
		sb.WriteByte(c)
	}
	in := sb.String()

	out := rpc.AppendString(nil, in)
	require.True(t, json.Valid(out))
	assert.Equal(t, byte('"'), out[0])
	assert.Contains(t, string(out), `\u0000`)
	assert.Contains(t, string(out), `\u001f`)

	var got string
	require.NoError(t, json.Unmarshal(out, &got))
	assert.Equal(t, in, got)
}

func TestAppendStringKeepsPrefix(t *testing.T) {
	dst := []byte("prefix:")
	out := rpc.AppendString(dst, `a"b`)
	assert.Equal(t, `prefix:"a\"b"`, string(out))
}

// wireMessage is the shape of a "message" notification as a client decodes it.
type wireMessage struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  struct {
		Channel     string          `json:"channel"`
		Data        json.RawMessage `json:"data"`
		MsgID       string          `json:"msg_id"`
		QoS         int             `json:"qos"`
		Redelivered *bool           `json:"redelivered"`
	} `json:"params"`
}

func TestAppendMessageExact(t *testing.T) {
	out := rpc.AppendMessage(nil, "news", json.RawMessage(`{"a":1}`), "m-1", 1, false)
	assert.Equal(t, `{"jsonrpc":"2.0","method":"message","params":{"channel":"news","data":{"a":1},"msg_id":"m-1","qos":1}}`, string(out))

	out = rpc.AppendMessage([]byte("x"), "news", json.RawMessage(`null`), "m-1", 0, true)
	assert.Equal(t, `x{"jsonrpc":"2.0","method":"message","params":{"channel":"news","data":null,"msg_id":"m-1","qos":0,"redelivered":true}}`, string(out))
}

func TestAppendMessageRoundTrip(t *testing.T) {
	datas := []string{`null`, `true`, `-1.5e300`, `"s\"\\\u0000"`, `[1,{"b":[]}]`, "{ \"spaced\" :\n 1 }", `"😀 \u2028"`}
	for i, channel := range trickyStrings {
		data := datas[i%len(datas)]
		msgID := trickyStrings[len(trickyStrings)-1-i]
		redelivered := i%2 == 1

		out := rpc.AppendMessage(nil, channel, json.RawMessage(data), msgID, i%2, redelivered)
		require.True(t, json.Valid(out), "output %q is not valid JSON", out)

		var got wireMessage
		require.NoError(t, json.Unmarshal(out, &got))
		assert.Equal(t, "2.0", got.JSONRPC)
		assert.Equal(t, "message", got.Method)
		assert.Equal(t, channel, got.Params.Channel)
		assert.Equal(t, data, string(got.Params.Data))
		assert.Equal(t, msgID, got.Params.MsgID)
		assert.Equal(t, i%2, got.Params.QoS)
		if redelivered {
			require.NotNil(t, got.Params.Redelivered)
			assert.True(t, *got.Params.Redelivered)
		} else {
			assert.Nil(t, got.Params.Redelivered)
		}
	}
}

// nameCase is one input of CheckChannel or CheckMember, and whether it is
// valid.
type nameCase struct {
	name  string
	input string
	valid bool
}

// commonNameCases apply to channel names and member ids alike.
var commonNameCases = []nameCase{
	{name: "one byte", input: "a", valid: true},
	{name: "empty", input: "", valid: false},
	{name: "space", input: " ", valid: true},
	{name: "glob star", input: "news.*", valid: true},
	{name: "glob question", input: "a?c", valid: true},
	{name: "glob class", input: "[a-z]", valid: true},
	{name: "backslash", input: `a\b`, valid: true},
	{name: "braces", input: "{a,b}", valid: true},
	{name: "multibyte", input: "ник-😀-中文", valid: true},
	{name: "no-break space", input: "a\u00a0b", valid: true},
	{name: "line separator", input: "a\u2028b", valid: true},
	{name: "NUL", input: "a\x00b", valid: false},
	{name: "tab", input: "a\tb", valid: false},
	{name: "newline", input: "a\n", valid: false},
	{name: "unit separator", input: "\x1f", valid: false},
	{name: "DEL", input: "a\x7fb", valid: false},
	{name: "first C1", input: "a\u0080b", valid: false},
	{name: "NEL", input: "\u0085", valid: false},
	{name: "last C1", input: "a\u009f", valid: false},
	{name: "invalid byte", input: "a\xffb", valid: false},
	{name: "truncated rune", input: "a\xe2\x82", valid: false},
	{name: "lone continuation", input: "\x80", valid: false},
	{name: "encoded surrogate", input: "\xed\xa0\x80", valid: false},
	{name: "overlong slash", input: "\xc0\xaf", valid: false},
}

func TestCheckChannel(t *testing.T) {
	cases := append([]nameCase{
		{name: "255 bytes", input: strings.Repeat("c", 255), valid: true},
		{name: "256 bytes", input: strings.Repeat("c", 256), valid: false},
		{name: "255 bytes of 3-byte runes", input: strings.Repeat("€", 85), valid: true},
		{name: "258 bytes of 3-byte runes", input: strings.Repeat("€", 86), valid: false},
		{name: "254 bytes and a 2-byte rune", input: strings.Repeat("c", 254) + "é", valid: false},
	}, commonNameCases...)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := rpc.CheckChannel(tc.input)
			if tc.valid {
				assert.Nil(t, err)
				return
			}
			require.NotNil(t, err)
			assert.Equal(t, rpc.CodeInvalidChannel, err.Code)
			assert.Contains(t, err.Message, "invalid channel name")
		})
	}
}

func TestCheckMember(t *testing.T) {
	cases := append([]nameCase{
		{name: "128 bytes", input: strings.Repeat("m", 128), valid: true},
		{name: "129 bytes", input: strings.Repeat("m", 129), valid: false},
		{name: "128 bytes of 4-byte runes", input: strings.Repeat("😀", 32), valid: true},
		{name: "132 bytes of 4-byte runes", input: strings.Repeat("😀", 33), valid: false},
		{name: "255 bytes", input: strings.Repeat("m", 255), valid: false},
	}, commonNameCases...)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := rpc.CheckMember(tc.input)
			if tc.valid {
				assert.Nil(t, err)
				return
			}
			require.NotNil(t, err)
			assert.Equal(t, rpc.CodeInvalidMember, err.Code)
			assert.Contains(t, err.Message, "invalid member id")
		})
	}
}

func TestCheckNameMessageShortensLongName(t *testing.T) {
	// 100 runes of 3 bytes each: the message cuts the name at a rune
	// boundary so that the message itself stays valid UTF-8.
	name := strings.Repeat("€", 100)

	err := rpc.CheckChannel(name)
	require.NotNil(t, err)
	assert.True(t, utf8.ValidString(err.Message), "message %q", err.Message)
	assert.Contains(t, err.Message, "...")
	assert.NotContains(t, err.Message, name)
	assert.Contains(t, err.Message, "limit of 255 bytes")
}

func TestCompactInfoValid(t *testing.T) {
	cases := map[string]struct{ raw, want string }{
		"absent":          {raw: "", want: `{}`},
		"whitespace only": {raw: " \n", want: `{}`},
		"null":            {raw: `null`, want: `{}`},
		"empty object":    {raw: `{}`, want: `{}`},
		"spaced object":   {raw: "{ \"name\" : \"Ann\" ,\n \"age\" : 7 }", want: `{"name":"Ann","age":7}`},
		"html kept":       {raw: `{"s":"<&>"}`, want: `{"s":"<&>"}`},
		"unicode kept":    {raw: `{"s":"ю😀","e":"\u00e9"}`, want: `{"s":"ю😀","e":"\u00e9"}`},
		"nested":          {raw: `{"a":{"b":[1, 2, {"c":null}]}}`, want: `{"a":{"b":[1,2,{"c":null}]}}`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var raw json.RawMessage
			if tc.raw != "" {
				raw = json.RawMessage(tc.raw)
			}
			got, err := rpc.CompactInfo(raw)
			require.Nil(t, err)
			assert.Equal(t, tc.want, string(got))
		})
	}
}

// infoOfSize builds an object that is exactly n bytes as compact JSON, with
// padding spaces that compaction removes.
func infoOfSize(n int) json.RawMessage {
	// {"k":"..."} is 8 bytes plus the value.
	return json.RawMessage(`{ "k" : "` + strings.Repeat("x", n-8) + `" }`)
}

func TestCompactInfoLimit(t *testing.T) {
	raw := infoOfSize(1024)
	require.Greater(t, len(raw), 1024, "the raw info must exceed the limit before compaction")

	got, err := rpc.CompactInfo(raw)
	require.Nil(t, err)
	assert.Len(t, got, 1024)

	got, err = rpc.CompactInfo(infoOfSize(1025))
	require.NotNil(t, err)
	assert.Nil(t, got)
	assert.Equal(t, rpc.CodeInvalidMember, err.Code)
	assert.Contains(t, err.Message, "1025 bytes")
}

func TestCompactInfoInvalid(t *testing.T) {
	cases := map[string]string{
		"array":            `[1]`,
		"string":           `"info"`,
		"number":           `1`,
		"boolean":          `true`,
		"truncated object": `{"a":`,
		"two objects":      `{} {}`,
		"unicode space":    "\u00a0{}",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := rpc.CompactInfo(json.RawMessage(raw))
			require.NotNil(t, err)
			assert.Nil(t, got)
			assert.Equal(t, rpc.CodeInvalidMember, err.Code)
			assert.Contains(t, err.Message, "invalid member info")
		})
	}
}
