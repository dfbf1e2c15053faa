package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/server"
)

// authWait bounds every wait in the access control tests.
const authWait = 5 * time.Second

const (
	authSecret = "auth-test-hmac-secret"
	authAPIKey = "auth-test-api-key"
)

// authLogBuffer collects a node's log output. The node writes from its
// connection goroutines while the test reads.
type authLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *authLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.Write(p)
}

func (b *authLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.String()
}

// authNode is a node served by Node.Serve on a loopback listener, with its
// log output captured at debug level.
type authNode struct {
	wsURL   string
	baseURL string
	logs    *authLogBuffer
	stop    func()
}

// authStartNode starts a node with node id "auth1" on 127.0.0.1. mutate, if
// not nil, changes the default configuration first. The node stops when the
// test ends, or earlier through stop.
func authStartNode(t *testing.T, mutate func(*config.Node)) *authNode {
	t.Helper()

	cfg := config.Default()
	cfg.NodeID = "auth1"
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &authLogBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	node, err := server.New(cfg, logger)
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- node.Serve(ctx, ln) }()

	// Serve returns once its graceful shutdown is over, which closes every
	// client connection first.
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-served:
				assert.NoError(t, err)
			case <-time.After(server.ShutdownTimeout + authWait):
				t.Errorf("the node did not stop within %s", server.ShutdownTimeout+authWait)
			}
		})
	}
	t.Cleanup(stop)

	base := "http://" + ln.Addr().String()
	return &authNode{wsURL: "ws" + strings.TrimPrefix(base, "http") + "/ws", baseURL: base, logs: logs, stop: stop}
}

// authWithQuery returns wsURL with the token query parameter set.
func authWithQuery(wsURL, token string) string {
	return wsURL + "?token=" + url.QueryEscape(token)
}

// authBearer returns a header that carries token as a bearer token.
func authBearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// authDial opens a WebSocket connection, which must be accepted, and
// completes one request on it. The round trip makes the server finish setting
// up the connection before the test dials the next one, because the first
// connection of a node fills in the defaults of a configuration that all its
// connections share.
func authDial(t *testing.T, wsURL string, header http.Header) *websocket.Conn {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), authWait)
	defer cancel()
	dialer := websocket.Dialer{Subprotocols: []string{server.Subprotocol}, HandshakeTimeout: authWait}
	ws, resp, err := dialer.DialContext(ctx, wsURL, header)
	require.NoError(t, err, "the upgrade was rejected: %s", authResponseText(resp))
	_ = resp.Body.Close()
	t.Cleanup(func() { _ = ws.Close() })

	probe := authCall(t, ws, "no.such.method", map[string]any{})
	require.NotNil(t, probe.Error, "an unknown method must fail")
	return ws
}

// authResponseText returns the status and body of a rejected upgrade.
func authResponseText(resp *http.Response) string {
	if resp == nil {
		return "no HTTP response"
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.Status + ": " + string(body)
}

// authRejectedUpgrade dials a WebSocket connection that must be rejected and
// returns the HTTP response with its body.
func authRejectedUpgrade(t *testing.T, wsURL string, header http.Header) (*http.Response, string) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), authWait)
	defer cancel()
	dialer := websocket.Dialer{Subprotocols: []string{server.Subprotocol}, HandshakeTimeout: authWait}
	ws, resp, err := dialer.DialContext(ctx, wsURL, header)
	if err == nil {
		_ = ws.Close()
	}
	require.ErrorIs(t, err, websocket.ErrBadHandshake, "the upgrade must be rejected")
	require.NotNil(t, resp)

	// gorilla/websocket v1.5.3 keeps up to 1024 bytes of the body, which is
	// enough for the reason.
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// authResponse is a JSON-RPC response.
type authResponse struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// authRequestIDs numbers the requests of these tests.
var authRequestIDs atomic.Int64

// authCall sends one request and returns its response. Server notifications
// that arrive first, such as a publisher's own message, are discarded.
func authCall(t *testing.T, ws *websocket.Conn, method string, params any) authResponse {
	t.Helper()

	id := "auth-" + strconv.FormatInt(authRequestIDs.Add(1), 10)
	raw, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	require.NoError(t, err)
	require.NoError(t, ws.SetWriteDeadline(time.Now().Add(authWait)))
	require.NoError(t, ws.WriteMessage(websocket.TextMessage, raw))

	require.NoError(t, ws.SetReadDeadline(time.Now().Add(authWait)))
	for {
		_, frame, err := ws.ReadMessage()
		require.NoError(t, err, "no response to %s within %s", method, authWait)
		var resp authResponse
		require.NoError(t, json.Unmarshal(frame, &resp), "the frame is not a JSON object: %s", frame)
		if string(resp.ID) == strconv.Quote(id) {
			return resp
		}
		require.Nil(t, resp.ID, "a response to another request arrived: %s", frame)
	}
}

// authCallOK sends a request that must succeed and returns its result.
func authCallOK(t *testing.T, ws *websocket.Conn, method string, params any) json.RawMessage {
	t.Helper()

	resp := authCall(t, ws, method, params)
	require.Nil(t, resp.Error, "%s %v failed: %+v", method, params, resp.Error)
	return resp.Result
}

// authCallCode sends a request that must fail and returns its error code and
// message.
func authCallCode(t *testing.T, ws *websocket.Conn, method string, params any) (int, string) {
	t.Helper()

	resp := authCall(t, ws, method, params)
	require.NotNil(t, resp.Error, "%s %v succeeded, expected an error: %s", method, params, resp.Result)
	return resp.Error.Code, resp.Error.Message
}

// authNextMessage reads the next frame, which must be a "message"
// notification, and returns its params.
func authNextMessage(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()

	require.NoError(t, ws.SetReadDeadline(time.Now().Add(authWait)))
	_, frame, err := ws.ReadMessage()
	require.NoError(t, err, "no message within %s", authWait)
	var n struct {
		Method string         `json:"method"`
		Params map[string]any `json:"params"`
	}
	require.NoError(t, json.Unmarshal(frame, &n), "the frame is not a JSON object: %s", frame)
	require.Equal(t, "message", n.Method, "frame: %s", frame)
	return n.Params
}

// authSign signs claims with method and key.
func authSign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()

	token, err := jwt.NewWithClaims(method, claims).SignedString(key)
	require.NoError(t, err)
	return token
}

// authHS256 signs claims with authSecret.
func authHS256(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()

	return authSign(t, jwt.SigningMethodHS256, []byte(authSecret), claims)
}

// authNoneToken builds an unsigned token with "alg": "none" by hand.
func authNoneToken(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload)) + "."
}

// authWriteFile writes data to a new file in the test's temporary folder
// and returns its path.
func authWriteFile(t *testing.T, name string, data []byte) string {
	t.Helper()

	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

// authPublicKeyPEM returns pub as a PEM PUBLIC KEY block.
func authPublicKeyPEM(t *testing.T, pub any) []byte {
	t.Helper()

	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// authCertificatePEM returns a self-signed certificate of key as a PEM
// CERTIFICATE block.
func authCertificatePEM(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()

	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wscluster auth test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// authKeys is one RSA and one ECDSA P-256 key pair, with the public keys
// written as PEM files.
type authKeys struct {
	rsa       *rsa.PrivateKey
	rsaPEM    []byte
	rsaPath   string
	rsaCert   string
	ecdsa     *ecdsa.PrivateKey
	ecdsaPath string
}

func authGenerateKeys(t *testing.T) authKeys {
	t.Helper()

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	rsaPEM := authPublicKeyPEM(t, &rsaKey.PublicKey)
	return authKeys{
		rsa:       rsaKey,
		rsaPEM:    rsaPEM,
		rsaPath:   authWriteFile(t, "rsa.pub.pem", rsaPEM),
		rsaCert:   authWriteFile(t, "rsa.cert.pem", authCertificatePEM(t, rsaKey)),
		ecdsa:     ecKey,
		ecdsaPath: authWriteFile(t, "ec.pub.pem", authPublicKeyPEM(t, &ecKey.PublicKey)),
	}
}

func TestAuthUpgradeRejections(t *testing.T) {
	keys := authGenerateKeys(t)
	hmacNode := authStartNode(t, func(c *config.Node) { c.TokenHMACSecret = authSecret })
	rsaNode := authStartNode(t, func(c *config.Node) { c.TokenPublicKey = keys.rsaPath })
	ecNode := authStartNode(t, func(c *config.Node) { c.TokenPublicKey = keys.ecdsaPath })
	now := time.Now()
	valid := jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}

	cases := []struct {
		name   string
		node   *authNode
		token  string
		header http.Header
		reason string
	}{
		{name: "no token", node: hmacNode, reason: "missing token"},
		{name: "other auth scheme", node: hmacNode, header: http.Header{"Authorization": {"Basic " + authHS256(t, valid)}}, reason: "missing token"},
		{name: "malformed", node: hmacNode, token: "not.a-token", reason: "token is malformed"},
		{name: "other secret", node: hmacNode, token: authSign(t, jwt.SigningMethodHS256, []byte("other secret"), valid), reason: "signature is invalid"},
		{name: "HS256 to RS256 node", node: rsaNode, token: authHS256(t, valid), reason: "signing method HS256 is invalid"},
		{name: "RS256 to ES256 node", node: ecNode, token: authSign(t, jwt.SigningMethodRS256, keys.rsa, valid), reason: "signing method RS256 is invalid"},
		{name: "alg none to HS256 node", node: hmacNode, token: authNoneToken(`{"sub":"alice"}`), reason: "signing method none is invalid"},
		{name: "alg none to RS256 node", node: rsaNode, token: authNoneToken(`{"sub":"alice"}`), reason: "signing method none is invalid"},
		{name: "RSA public key as HMAC secret", node: rsaNode, token: authSign(t, jwt.SigningMethodHS256, keys.rsaPEM, valid), reason: "signing method HS256 is invalid"},
		{name: "expired", node: hmacNode, token: authHS256(t, jwt.MapClaims{"sub": "alice", "exp": now.Add(-30 * time.Second).Unix()}), reason: "token is expired"},
		{name: "not yet valid", node: hmacNode, token: authHS256(t, jwt.MapClaims{"sub": "alice", "nbf": now.Add(30 * time.Second).Unix()}), reason: "token is not valid yet"},
		{name: "missing sub", node: hmacNode, token: authHS256(t, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}), reason: "sub claim is missing"},
		{name: "expired in header", node: hmacNode, header: authBearer(authHS256(t, jwt.MapClaims{"sub": "alice", "exp": now.Add(-30 * time.Second).Unix()})), reason: "token is expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.node.wsURL
			if tc.token != "" {
				target = authWithQuery(target, tc.token)
			}
			resp, body := authRejectedUpgrade(t, target, tc.header)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			assert.Equal(t, `Bearer error="invalid_token"`, resp.Header.Get("WWW-Authenticate"))
			assert.Contains(t, body, "unauthorized")
			assert.Contains(t, body, tc.reason)
		})
	}
}

func TestAuthUpgradeAccepted(t *testing.T) {
	keys := authGenerateKeys(t)
	hmacNode := authStartNode(t, func(c *config.Node) { c.TokenHMACSecret = authSecret })
	rsaNode := authStartNode(t, func(c *config.Node) { c.TokenPublicKey = keys.rsaPath })
	rsaCertNode := authStartNode(t, func(c *config.Node) { c.TokenPublicKey = keys.rsaCert })
	ecNode := authStartNode(t, func(c *config.Node) { c.TokenPublicKey = keys.ecdsaPath })
	claims := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}

	// NumericDate has whole seconds, so exp 2 s ago is 2-3 s ago: inside
	// the 5 s leeway with room for a slow test machine.
	lateClaims := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-2 * time.Second).Unix()}

	cases := []struct {
		name   string
		url    string
		header http.Header
	}{
		{"HS256 query parameter", authWithQuery(hmacNode.wsURL, authHS256(t, claims)), nil},
		{"HS256 bearer header", hmacNode.wsURL, authBearer(authHS256(t, claims))},
		{"HS256 lower-case bearer", hmacNode.wsURL, http.Header{"Authorization": {"bearer " + authHS256(t, claims)}}},
		{"HS256 exp inside leeway", authWithQuery(hmacNode.wsURL, authHS256(t, lateClaims)), nil},
		{"RS256 public key file", rsaNode.wsURL, authBearer(authSign(t, jwt.SigningMethodRS256, keys.rsa, claims))},
		{"RS256 certificate file", authWithQuery(rsaCertNode.wsURL, authSign(t, jwt.SigningMethodRS256, keys.rsa, claims)), nil},
		{"ES256 public key file", authWithQuery(ecNode.wsURL, authSign(t, jwt.SigningMethodES256, keys.ecdsa, claims)), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws := authDial(t, tc.url, tc.header)

			// The roster proves that the connection is served as "alice".
			var roster struct {
				Members []struct {
					Member string `json:"member"`
				} `json:"members"`
			}
			result := authCallOK(t, ws, "presence.join", map[string]any{"channel": "room", "member": "alice"})
			require.NoError(t, json.Unmarshal(result, &roster))
			require.Len(t, roster.Members, 1)
			assert.Equal(t, "alice", roster.Members[0].Member)
		})
	}
}

func TestAuthClientPackageToken(t *testing.T) {
	n := authStartNode(t, func(c *config.Node) { c.TokenHMACSecret = authSecret })
	ctx, cancel := context.WithTimeout(context.Background(), authWait)
	defer cancel()

	// Without a token the handshake fails with 401.
	_, err := client.Dial(ctx, n.wsURL, client.Options{})
	var handshake *client.HandshakeError
	require.ErrorAs(t, err, &handshake)
	assert.Equal(t, http.StatusUnauthorized, handshake.StatusCode)
	assert.Contains(t, handshake.Reason, "missing token", "the server's reason reaches the client")

	c, err := client.Dial(ctx, n.wsURL, client.Options{Token: authHS256(t, jwt.MapClaims{"sub": "alice", "channels": []string{"room"}})})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Subscribe(ctx, "room"))

	err = c.Subscribe(ctx, "other")
	var rpcErr *client.RPCError
	require.ErrorAs(t, err, &rpcErr)
	assert.Equal(t, 1006, rpcErr.Code)
}

// authChannelMethods are the requests that a channels claim restricts.
var authChannelMethods = []struct {
	method string
	params func(channel string) map[string]any
}{
	{"subscribe", func(ch string) map[string]any { return map[string]any{"channel": ch} }},
	{"publish", func(ch string) map[string]any { return map[string]any{"channel": ch, "data": "hi"} }},
	{"presence.join", func(ch string) map[string]any { return map[string]any{"channel": ch, "member": "alice"} }},
	{"presence.members", func(ch string) map[string]any { return map[string]any{"channel": ch} }},
}

func TestAuthChannelsClaim(t *testing.T) {
	n := authStartNode(t, func(c *config.Node) { c.TokenHMACSecret = authSecret })
	token := authHS256(t, jwt.MapClaims{"sub": "alice", "channels": []string{"room", "news*"}})
	ws := authDial(t, authWithQuery(n.wsURL, token), nil)

	for _, channel := range []string{"room", "news", "news-eu"} {
		for _, m := range authChannelMethods {
			t.Run(m.method+" "+channel+" allowed", func(t *testing.T) {
				authCallOK(t, ws, m.method, m.params(channel))
			})
		}
	}
	for _, channel := range []string{"other", "roo", "rooms", "new"} {
		for _, m := range authChannelMethods {
			t.Run(m.method+" "+channel+" rejected", func(t *testing.T) {
				code, message := authCallCode(t, ws, m.method, m.params(channel))
				assert.Equal(t, 1006, code)
				assert.Contains(t, message, strconv.Quote(channel))
			})
		}
	}

	// The connection stays open after a rejected request.
	authCallOK(t, ws, "presence.members", map[string]any{"channel": "room"})
}

func TestAuthJoinOnlyAsSubject(t *testing.T) {
	n := authStartNode(t, func(c *config.Node) { c.TokenHMACSecret = authSecret })
	ws := authDial(t, n.wsURL, authBearer(authHS256(t, jwt.MapClaims{"sub": "alice"})))

	code, message := authCallCode(t, ws, "presence.join", map[string]any{"channel": "room", "member": "bob"})
	assert.Equal(t, 1006, code)
	assert.Contains(t, message, `"alice"`)

	// The rejected join left nothing behind: the roster is empty.
	result := authCallOK(t, ws, "presence.members", map[string]any{"channel": "room"})
	assert.JSONEq(t, `{"channel":"room","members":[]}`, string(result))

	result = authCallOK(t, ws, "presence.join", map[string]any{"channel": "room", "member": "alice"})
	assert.Contains(t, string(result), `"member":"alice"`)
}

func TestAuthNoChannelsClaimAllowsAll(t *testing.T) {
	n := authStartNode(t, func(c *config.Node) { c.TokenHMACSecret = authSecret })
	ws := authDial(t, n.wsURL, authBearer(authHS256(t, jwt.MapClaims{"sub": "alice"})))

	for _, channel := range []string{"room", "other", "roo", "news-eu"} {
		for _, m := range authChannelMethods {
			t.Run(m.method+" "+channel, func(t *testing.T) {
				authCallOK(t, ws, m.method, m.params(channel))
			})
		}
	}
}

func TestAuthTokenNotLogged(t *testing.T) {
	n := authStartNode(t, func(c *config.Node) {
		c.TokenHMACSecret = authSecret
		c.APIKey = authAPIKey
	})
	now := time.Now()
	forged := authSign(t, jwt.SigningMethodHS256, []byte("other secret"), jwt.MapClaims{"sub": "alice"})
	expired := authHS256(t, jwt.MapClaims{"sub": "alice", "exp": now.Add(-time.Minute).Unix()})
	inQuery := authHS256(t, jwt.MapClaims{"sub": "alice", "channels": []string{"room"}})
	inHeader := authHS256(t, jwt.MapClaims{"sub": "bob"})

	resp, _ := authRejectedUpgrade(t, authWithQuery(n.wsURL, forged), nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = authRejectedUpgrade(t, n.wsURL, authBearer(expired))
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// Rejected requests on an accepted connection log too, at debug level.
	ws := authDial(t, authWithQuery(n.wsURL, inQuery), nil)
	code, _ := authCallCode(t, ws, "subscribe", map[string]any{"channel": "other"})
	require.Equal(t, 1006, code)
	other := authDial(t, n.wsURL, authBearer(inHeader))
	r := authPost(t, n, http.MethodPost, authAPIKey, `{"channel":"room","data":1}`)
	require.Equal(t, http.StatusOK, r.status)
	r = authPost(t, n, http.MethodPost, "wrong-"+authAPIKey, `{"channel":"room","data":1}`)
	require.Equal(t, http.StatusUnauthorized, r.status)

	// The clients hang up first, so the node need not wait for their close
	// handshakes. Once stopped, it has written every log line.
	require.NoError(t, ws.Close())
	require.NoError(t, other.Close())
	n.stop()
	logs := n.logs.String()
	require.Contains(t, logs, "upgrade rejected", "the captured logs must contain the rejections")
	require.Contains(t, logs, "connection opened", "the captured logs must contain debug lines")
	for name, token := range map[string]string{"forged": forged, "expired": expired, "query": inQuery, "header": inHeader} {
		assert.NotContains(t, logs, token, "the %s token is in the logs", name)

		// The signature is checked on its own too, so that a log line that
		// contains only part of a token still fails the test.
		signature := token[strings.LastIndex(token, ".")+1:]
		assert.NotContains(t, logs, signature, "the signature of the %s token is in the logs", name)
	}
	assert.NotContains(t, logs, authSecret, "the HMAC secret is in the logs")
	assert.NotContains(t, logs, authAPIKey, "the API key is in the logs")
}

// authAPIResult is a status code and JSON body of POST /api/publish.
type authAPIResult struct {
	status int
	header http.Header
	body   map[string]any
}

// authPost sends a request to /api/publish with the API key key, or with no
// Authorization header when key is empty.
func authPost(t *testing.T, n *authNode, method, key, body string) authAPIResult {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), authWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.baseURL+"/api/publish", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()

	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	result := authAPIResult{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusNotFound {
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		require.NoError(t, json.Unmarshal(raw, &result.body), "the body is not a JSON object: %s", raw)
	}
	return result
}

// authAPIErrorCode returns the error code of an error body.
func authAPIErrorCode(t *testing.T, r authAPIResult) int {
	t.Helper()

	e, ok := r.body["error"].(map[string]any)
	require.True(t, ok, "the body has no error object: %v", r.body)
	require.IsType(t, "", e["message"], "the error has no message: %v", e)
	require.NotEmpty(t, e["message"])
	code, ok := e["code"].(float64)
	require.True(t, ok, "the error code is not a number: %v", e)
	return int(code)
}

func TestAuthAPIPublishErrors(t *testing.T) {
	n := authStartNode(t, func(c *config.Node) {
		c.APIKey = authAPIKey
		c.MaxMessageBytes = 1024
	})
	oversized := `{"channel":"room","data":"` + strings.Repeat("x", 2000) + `"}`

	cases := []struct {
		name   string
		method string
		key    string
		body   string
		status int
		code   int
	}{
		{"wrong key", http.MethodPost, "wrong-key", `{"channel":"room","data":1}`, http.StatusUnauthorized, 1006},
		{"missing header", http.MethodPost, "", `{"channel":"room","data":1}`, http.StatusUnauthorized, 1006},
		{"key as prefix", http.MethodPost, authAPIKey + "x", `{"channel":"room","data":1}`, http.StatusUnauthorized, 1006},
		{"GET", http.MethodGet, authAPIKey, "", http.StatusMethodNotAllowed, -32600},
		{"invalid JSON", http.MethodPost, authAPIKey, `{"channel":`, http.StatusBadRequest, -32700},
		{"array body", http.MethodPost, authAPIKey, `[{"channel":"room","data":1}]`, http.StatusBadRequest, -32600},
		{"empty body", http.MethodPost, authAPIKey, ``, http.StatusBadRequest, -32700},
		{"missing channel", http.MethodPost, authAPIKey, `{"data":1}`, http.StatusBadRequest, -32602},
		{"missing data", http.MethodPost, authAPIKey, `{"channel":"room"}`, http.StatusBadRequest, -32602},
		{"empty channel", http.MethodPost, authAPIKey, `{"channel":"","data":1}`, http.StatusBadRequest, 1001},
		{"control character in channel", http.MethodPost, authAPIKey, `{"channel":"a\u0007b","data":1}`, http.StatusBadRequest, 1001},
		{"qos 2", http.MethodPost, authAPIKey, `{"channel":"room","data":1,"qos":2}`, http.StatusBadRequest, -32602},
		{"body over the limit", http.MethodPost, authAPIKey, oversized, http.StatusRequestEntityTooLarge, -32600},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := authPost(t, n, tc.method, tc.key, tc.body)
			require.Equal(t, tc.status, r.status, "body: %v", r.body)
			assert.Equal(t, tc.code, authAPIErrorCode(t, r))
			switch tc.status {
			case http.StatusUnauthorized:
				assert.NotEmpty(t, r.header.Get("WWW-Authenticate"))
			case http.StatusMethodNotAllowed:
				assert.Equal(t, http.MethodPost, r.header.Get("Allow"))
			}
		})
	}
}

func TestAuthAPIPublishDelivers(t *testing.T) {
	n := authStartNode(t, func(c *config.Node) {
		c.APIKey = authAPIKey
		c.TokenHMACSecret = authSecret
		c.MaxMessageBytes = 1024
	})

	// The API is not bound by client tokens: the subscriber's token allows
	// only "room", and the backend publishes with the API key alone.
	ws := authDial(t, n.wsURL, authBearer(authHS256(t, jwt.MapClaims{"sub": "alice", "channels": []string{"room"}})))
	authCallOK(t, ws, "subscribe", map[string]any{"channel": "room"})

	r := authPost(t, n, http.MethodPost, authAPIKey, `{"channel":"room","data":{"text":"hello"}}`)
	require.Equal(t, http.StatusOK, r.status, "body: %v", r.body)
	require.Len(t, r.body, 1, "the body must contain only msg_id: %v", r.body)
	msgID, ok := r.body["msg_id"].(string)
	require.True(t, ok, "msg_id is not a string: %v", r.body)
	require.NotEmpty(t, msgID)

	msg := authNextMessage(t, ws)
	assert.Equal(t, "room", msg["channel"])
	assert.Equal(t, msgID, msg["msg_id"])
	assert.Equal(t, map[string]any{"text": "hello"}, msg["data"])
	assert.Equal(t, float64(0), msg["qos"])

	// A QoS 1 publish arrives as QoS 1.
	r = authPost(t, n, http.MethodPost, authAPIKey, `{"channel":"room","data":[1,2],"qos":1}`)
	require.Equal(t, http.StatusOK, r.status, "body: %v", r.body)
	msg = authNextMessage(t, ws)
	assert.Equal(t, r.body["msg_id"], msg["msg_id"])
	assert.Equal(t, []any{float64(1), float64(2)}, msg["data"])
	assert.Equal(t, float64(1), msg["qos"])
	require.NoError(t, ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "method": "ack", "params": map[string]any{"msg_id": msg["msg_id"]}}))

	// A body of exactly --max-message-bytes is accepted.
	head, tail := `{"channel":"room","data":"`, `"}`
	exact := head + strings.Repeat("y", 1024-len(head)-len(tail)) + tail
	require.Len(t, exact, 1024)
	r = authPost(t, n, http.MethodPost, authAPIKey, exact)
	require.Equal(t, http.StatusOK, r.status, "body: %v", r.body)
	msg = authNextMessage(t, ws)
	assert.Equal(t, r.body["msg_id"], msg["msg_id"])
}

func TestAuthAPIAbsentWithoutKey(t *testing.T) {
	n := authStartNode(t, nil)

	r := authPost(t, n, http.MethodPost, authAPIKey, `{"channel":"room","data":1}`)
	assert.Equal(t, http.StatusNotFound, r.status)
}

func TestAuthPublicKeyFileErrors(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	missing := filepath.Join(t.TempDir(), "missing.pem")

	cases := []struct {
		name   string
		path   string
		reason string
	}{
		{"missing file", missing, "no such file"},
		{"not a PEM file", authWriteFile(t, "key.txt", []byte("not a key")), "no PEM block found"},
		{"P-384 key", authWriteFile(t, "p384.pem", authPublicKeyPEM(t, &p384.PublicKey)), "ES256 needs P-256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.NodeID = "auth1"
			cfg.TokenPublicKey = tc.path
			node, err := server.New(cfg, slog.New(slog.DiscardHandler))
			require.Error(t, err)
			assert.Nil(t, node)
			assert.Contains(t, err.Error(), "--token-public-key")
			assert.Contains(t, err.Error(), tc.path)
			assert.Contains(t, err.Error(), tc.reason)
		})
	}

	// The missing file error keeps its cause for errors.Is.
	cfg := config.Default()
	cfg.TokenPublicKey = missing
	_, err = server.New(cfg, slog.New(slog.DiscardHandler))
	assert.True(t, errors.Is(err, fs.ErrNotExist), "error: %v", err)
}

func TestAuthParseRejectsTwoKeys(t *testing.T) {
	path := authWriteFile(t, "key.pem", []byte("unused"))
	secret := "parse-test-secret"

	_, err := config.Parse([]string{"--token-hmac-secret", secret, "--token-public-key", path}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--token-public-key")
	assert.Contains(t, err.Error(), "--token-hmac-secret")
	assert.NotContains(t, err.Error(), secret)

	// A secret from the environment conflicts just the same.
	env := map[string]string{"WSCLUSTER_TOKEN_HMAC_SECRET": secret}
	lookup := func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
	_, err = config.Parse([]string{"--token-public-key", path}, lookup)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--token-public-key")
	assert.NotContains(t, err.Error(), secret)
}
