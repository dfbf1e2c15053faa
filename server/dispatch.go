package server

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/wscluster/wscluster/rpc"
	"github.com/wscluster/wscluster/wsconn"
)

// dispatch serves one client text message: a single request or a batch.
func (h *Handler) dispatch(c *wsconn.Conn, msg []byte) {
	elems, isBatch, perr := rpc.SplitBatch(msg)
	if perr != nil {
		h.countError(perr)
		h.send(c, rpc.EncodeError(nil, perr))
		return
	}
	if !isBatch {
		h.serveRequest(c, elems[0], func(payload []byte) { h.send(c, payload) })
		return
	}

	// A batch gets one array with the responses of its requests, or no
	// frame at all when it held only notifications. Frames queued while the
	// batch runs, such as presence events, are held back until the array is
	// queued, so that they follow the results they come after.
	var responses [][]byte
	c.HoldSends()
	for _, elem := range elems {
		h.serveRequest(c, elem, func(payload []byte) { responses = append(responses, payload) })
	}
	var batch []byte
	if len(responses) > 0 {
		batch = wsconn.TextFrame(joinArray(responses))
	}
	// A failed release means the connection is closing; the reader ends
	// soon and cleans up.
	_ = c.ReleaseSends(batch)
}

// serveRequest decodes one request and routes it to its protocol. Every
// response payload goes to sink.
func (h *Handler) serveRequest(c *wsconn.Conn, raw json.RawMessage, sink func([]byte)) {
	req, rerr, id := rpc.DecodeRequest(raw)
	if rerr != nil {
		h.countError(rerr)
		if rerr.Code == rpc.CodeInvalidParams && id == nil {
			// A well-formed notification with bad params gets no reply,
			// like any notification.
			return
		}
		// An invalid request is answered even without an id, with a null
		// id, because it is not a valid notification either.
		sink(rpc.EncodeError(id, rerr))
		return
	}
	p := h.methods[req.Method]
	if p == nil {
		if !req.IsNotification() {
			e := rpc.Errorf(rpc.CodeMethodNotFound, "method not found: %q", req.Method)
			h.countError(e)
			sink(rpc.EncodeError(req.ID, e))
		}
		return
	}
	p.Handle(c, req, h.replier(c, req, sink))
}

// replier returns the Reply for one request. The reply of a notification is
// discarded, as JSON-RPC 2.0 requires.
func (h *Handler) replier(c *wsconn.Conn, req *rpc.Request, sink func([]byte)) rpc.Reply {
	return func(result any, e *rpc.Error) {
		if e != nil {
			h.countError(e)
			c.Logger().Debug("request failed", "method", req.Method, "code", e.Code, "err", e.Message)
		}
		if req.IsNotification() {
			return
		}
		if e != nil {
			sink(rpc.EncodeError(req.ID, e))
			return
		}
		payload, err := rpc.EncodeResult(req.ID, result)
		if err != nil {
			c.Logger().Error("encoding a result failed", "method", req.Method, "err", err)
			internal := rpc.Errorf(rpc.CodeInternalError, "internal error: the result could not be encoded")
			h.countError(internal)
			payload = rpc.EncodeError(req.ID, internal)
		}
		sink(payload)
	}
}

func (h *Handler) send(c *wsconn.Conn, payload []byte) {
	// A failed Send means the connection is closing; the reader ends soon
	// and cleans up, so the error needs no handling here.
	_ = c.Send(wsconn.TextFrame(payload))
}

func (h *Handler) countError(e *rpc.Error) {
	h.cfg.Metrics.RPCErrors.WithLabelValues(strconv.Itoa(e.Code)).Inc()
}

func joinArray(items [][]byte) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, item := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(item)
	}
	b.WriteByte(']')
	return b.Bytes()
}
