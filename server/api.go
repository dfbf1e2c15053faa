package server

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/wscluster/wscluster/auth"
	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/pubsub"
	"github.com/wscluster/wscluster/rpc"
)

// newVerifier returns the token verifier that cfg configures, or nil when
// access control is off.
func newVerifier(cfg config.Node) (*auth.Verifier, error) {
	switch {
	case cfg.TokenHMACSecret != "":
		return auth.NewHMACVerifier([]byte(cfg.TokenHMACSecret)), nil
	case cfg.TokenPublicKey != "":
		data, err := os.ReadFile(cfg.TokenPublicKey)
		if err != nil {
			return nil, fmt.Errorf("invalid value %q for --token-public-key: %w", cfg.TokenPublicKey, err)
		}
		v, err := auth.NewPublicKeyVerifier(data)
		if err != nil {
			return nil, fmt.Errorf("invalid value %q for --token-public-key: %w", cfg.TokenPublicKey, err)
		}
		return v, nil
	}
	return nil, nil
}

// apiPublisher serves POST /api/publish: a publish by a backend, through the
// same path as a client's.
type apiPublisher struct {
	key      []byte
	maxBytes int
	pubsub   *pubsub.PubSub
}

type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (a *apiPublisher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeAPIError(w, http.StatusMethodNotAllowed, rpc.CodeInvalidRequest, "method "+r.Method+" not allowed: use POST")
		return
	}
	if !a.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="wscluster api"`)
		writeAPIError(w, http.StatusUnauthorized, rpc.CodeNotAuthorized,
			"unauthorized: missing or wrong API key; send the header Authorization: Bearer <key> with the node's --api-key")
		return
	}
	msg, status, perr := a.decode(r)
	if perr != nil {
		writeAPIError(w, status, perr.Code, perr.Message)
		return
	}
	msgID, err := a.pubsub.Publish(r.Context(), msg.channel, msg.data, msg.qos)
	if errors.Is(err, backplane.ErrUnconfirmed) {
		writeAPIError(w, http.StatusGatewayTimeout, rpc.CodeUnconfirmed,
			"backplane did not confirm the publish "+msgID+" in time: it may still be delivered, so do not publish it again as new")
		return
	}
	if err != nil {
		writeAPIError(w, http.StatusServiceUnavailable, rpc.CodeUnavailable,
			"backplane unavailable: the publish was not taken and was delivered nowhere, try again later")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"msg_id": msgID})
}

// authorized compares the bearer key in constant time, so the response time
// leaks nothing about how much of a guess was right.
func (a *apiPublisher) authorized(r *http.Request) bool {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(key)), a.key) == 1
}

type apiMessage struct {
	channel string
	data    json.RawMessage
	qos     int
}

// decode reads and validates the body {"channel", "data", "qos"?}. The
// returned status is the HTTP status of a failure.
func (a *apiPublisher) decode(r *http.Request) (apiMessage, int, *rpc.Error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, int64(a.maxBytes)))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return apiMessage{}, http.StatusRequestEntityTooLarge,
			rpc.Errorf(rpc.CodeInvalidRequest, "request body over the limit of %d bytes (--max-message-bytes)", a.maxBytes)
	case err != nil:
		return apiMessage{}, http.StatusBadRequest, rpc.Errorf(rpc.CodeInvalidRequest, "reading the request body failed: %v", err)
	}
	if err := json.Unmarshal(body, new(json.RawMessage)); err != nil {
		return apiMessage{}, http.StatusBadRequest, rpc.Errorf(rpc.CodeParseError, "invalid body: not valid JSON: %v", err)
	}
	if trimmed := bytes.TrimSpace(body); trimmed[0] != '{' {
		return apiMessage{}, http.StatusBadRequest,
			rpc.Errorf(rpc.CodeInvalidRequest, `invalid body: want a JSON object {"channel", "data", "qos"?}`)
	}
	msg, perr := pubsub.DecodePublish(body)
	if perr != nil {
		return apiMessage{}, http.StatusBadRequest, perr
	}
	return apiMessage{channel: msg.Channel, data: msg.Data, qos: msg.QoS}, 0, nil
}

func writeAPIError(w http.ResponseWriter, status, code int, message string) {
	writeJSON(w, status, apiError{Error: apiErrorBody{Code: code, Message: message}})
}
