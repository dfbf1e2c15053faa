package mesh

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
)

// Handshake constants. The hello layout is: magic, version byte, node id
// length byte and node id, 8-byte big-endian incarnation, 2-byte big-endian
// address length and advertised address, nonce.
const (
	protocolMagic   = "WSCL"
	protocolVersion = 1
	nonceSize       = 32
	proofSize       = sha256.Size
	maxNodeIDLen    = 64
	// maxAddrLen fits a 253-byte DNS name in brackets plus ":" and a port.
	maxAddrLen = 262
	// proofDomain separates these proofs from any other HMAC keyed by the
	// same secret.
	proofDomain = "wscluster mesh handshake v1"
)

// Handshake and link errors. A handshake error other than errSelf,
// errDuplicateLink and errPeerClosing counts as a rejected link.
var (
	errBadMagic      = errors.New("not a wscluster mesh peer: wrong magic")
	errVersion       = errors.New("unsupported mesh protocol version")
	errInvalidNodeID = errors.New("invalid node id: want 1-64 of [A-Za-z0-9._-]")
	errInvalidAddr   = errors.New("invalid advertised address: want host:port")
	errAuth          = errors.New("cluster secret mismatch: the peer's proof did not verify; check that every node has the same --cluster-secret")
	errTLSHandshake  = errors.New("tls handshake failed")
	errBadVerdict    = errors.New("unknown handshake verdict")
	errSelf          = errors.New("connected to this node itself")
	errDuplicateLink = errors.New("another link to this peer is up")
	errDuplicateID   = errors.New("node id already in use by another running node; give each node a unique --node-id")
	errPeerClosing   = errors.New("peer is shutting down")
)

// role is the side of a connection, bound into the proof so that a proof
// cannot be reflected back to its sender.
type role byte

const (
	roleDialer   role = 1
	roleAcceptor role = 2
)

func (r role) other() role {
	if r == roleDialer {
		return roleAcceptor
	}
	return roleDialer
}

func (r role) String() string {
	if r == roleDialer {
		return "dialer"
	}
	return "acceptor"
}

// verdict is the last handshake message: whether the sender keeps the link.
type verdict byte

const (
	verdictAccept verdict = iota + 1
	verdictDuplicateLink
	verdictDuplicateID
	verdictSelf
	verdictClosing
)

// verdictFor returns the verdict that reports err, the result of reserve.
func verdictFor(err error) verdict {
	switch {
	case err == nil:
		return verdictAccept
	case errors.Is(err, errSelf):
		return verdictSelf
	case errors.Is(err, errDuplicateLink):
		return verdictDuplicateLink
	case errors.Is(err, errDuplicateID):
		return verdictDuplicateID
	}
	return verdictClosing
}

// err returns the error a rejecting verdict stands for.
func (v verdict) err() error {
	switch v {
	case verdictAccept:
		return nil
	case verdictSelf:
		return errSelf
	case verdictDuplicateLink:
		return errDuplicateLink
	case verdictDuplicateID:
		return errDuplicateID
	case verdictClosing:
		return errPeerClosing
	}
	return fmt.Errorf("%w %d", errBadVerdict, v)
}

// hello is the first handshake message of each side.
type hello struct {
	version     byte
	nodeID      string
	incarnation uint64
	addr        string
	nonce       [nonceSize]byte
}

// appendHello encodes h.
func appendHello(dst []byte, h *hello) []byte {
	dst = append(dst, protocolMagic...)
	dst = append(dst, h.version, byte(len(h.nodeID)))
	dst = append(dst, h.nodeID...)
	dst = binary.BigEndian.AppendUint64(dst, h.incarnation)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(h.addr)))
	dst = append(dst, h.addr...)
	return append(dst, h.nonce[:]...)
}

// helloReader reads a hello field by field and keeps the raw bytes, which
// the proofs cover. It reads exactly the hello, so the frames after the
// handshake stay unread.
type helloReader struct {
	r   io.Reader
	raw []byte
}

func (hr *helloReader) next(n int) ([]byte, error) {
	start := len(hr.raw)
	hr.raw = append(hr.raw, make([]byte, n)...)
	if _, err := io.ReadFull(hr.r, hr.raw[start:]); err != nil {
		return nil, err
	}
	return hr.raw[start:], nil
}

// readHead reads the magic and the version. They come first, so that a
// peer speaking another protocol or version is named as such.
func (hr *helloReader) readHead() (*hello, error) {
	head, err := hr.next(len(protocolMagic) + 1)
	if err != nil {
		return nil, err
	}
	if string(head[:len(protocolMagic)]) != protocolMagic {
		return nil, fmt.Errorf("%w %q", errBadMagic, head[:len(protocolMagic)])
	}
	h := &hello{version: head[len(protocolMagic)]}
	if h.version != protocolVersion {
		return nil, fmt.Errorf("%w %d, this node speaks %d", errVersion, h.version, protocolVersion)
	}
	return h, nil
}

// readHello reads and validates the peer's hello. It returns the hello and
// its raw bytes.
func readHello(r io.Reader) (*hello, []byte, error) {
	hr := &helloReader{r: r, raw: make([]byte, 0, 128)}
	h, err := hr.readHead()
	if err != nil {
		return nil, nil, err
	}

	// Node id, then incarnation and address length in one read.
	b, err := hr.next(1)
	if err != nil {
		return nil, nil, err
	}
	if b[0] == 0 || b[0] > maxNodeIDLen {
		return nil, nil, fmt.Errorf("%w: length %d", errInvalidNodeID, b[0])
	}
	if b, err = hr.next(int(b[0])); err != nil {
		return nil, nil, err
	}
	h.nodeID = string(b)
	if !validNodeID(h.nodeID) {
		return nil, nil, fmt.Errorf("%w: %q", errInvalidNodeID, h.nodeID)
	}
	if b, err = hr.next(8 + 2); err != nil {
		return nil, nil, err
	}
	h.incarnation = binary.BigEndian.Uint64(b)
	addrLen := int(binary.BigEndian.Uint16(b[8:]))
	if addrLen == 0 || addrLen > maxAddrLen {
		return nil, nil, fmt.Errorf("%w: length %d", errInvalidAddr, addrLen)
	}

	// Address and nonce.
	if b, err = hr.next(addrLen + nonceSize); err != nil {
		return nil, nil, err
	}
	h.addr = string(b[:addrLen])
	if !validAddr(h.addr) {
		return nil, nil, fmt.Errorf("%w: %q", errInvalidAddr, h.addr)
	}
	copy(h.nonce[:], b[addrLen:])
	return h, hr.raw, nil
}

// computeProof returns the proof that the sender in role r knows secret,
// bound to both hellos. The hellos contain both nonces, node ids and
// incarnations, so a proof is valid for this one connection only.
func computeProof(secret []byte, r role, senderHello, receiverHello []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(proofDomain))
	mac.Write([]byte{byte(r)})
	writePrefixed(mac, senderHello)
	writePrefixed(mac, receiverHello)
	return mac.Sum(nil)
}

// writePrefixed writes b with its length, so that two inputs cannot run
// into each other.
func writePrefixed(h hash.Hash, b []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// handshake runs the mesh handshake of one side of a connection. Each
// step writes before it reads, and every message is far smaller than a
// socket buffer, so both sides can run the same steps at once.
type handshake struct {
	conn    net.Conn
	role    role
	secret  []byte
	own     hello
	ownRaw  []byte
	peer    *hello
	peerRaw []byte
}

// newHandshake prepares a handshake with a fresh nonce.
func newHandshake(conn net.Conn, r role, secret []byte, nodeID string, incarnation uint64, addr string) (*handshake, error) {
	h := &handshake{conn: conn, role: r, secret: secret}
	h.own = hello{version: protocolVersion, nodeID: nodeID, incarnation: incarnation, addr: addr}
	if _, err := rand.Read(h.own.nonce[:]); err != nil {
		return nil, fmt.Errorf("draw handshake nonce: %w", err)
	}
	h.ownRaw = appendHello(nil, &h.own)
	return h, nil
}

// authenticate exchanges hellos and proofs and verifies the peer's proof.
// On success h.peer is the peer's hello.
func (h *handshake) authenticate() error {
	if _, err := h.conn.Write(h.ownRaw); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	peer, peerRaw, err := readHello(h.conn)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	h.peer, h.peerRaw = peer, peerRaw

	// Send this side's proof, then check the peer's in constant time.
	if _, err := h.conn.Write(computeProof(h.secret, h.role, h.ownRaw, h.peerRaw)); err != nil {
		return fmt.Errorf("send proof: %w", err)
	}
	got := make([]byte, proofSize)
	if _, err := io.ReadFull(h.conn, got); err != nil {
		return fmt.Errorf("read proof: %w", err)
	}
	want := computeProof(h.secret, h.role.other(), h.peerRaw, h.ownRaw)
	if !hmac.Equal(got, want) {
		return errAuth
	}
	return nil
}

// exchangeVerdicts sends this side's verdict and returns the peer's.
func (h *handshake) exchangeVerdicts(v verdict) (verdict, error) {
	if _, err := h.conn.Write([]byte{byte(v)}); err != nil {
		return 0, fmt.Errorf("send verdict: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(h.conn, b[:]); err != nil {
		return 0, fmt.Errorf("read verdict: %w", err)
	}
	return verdict(b[0]), nil
}

// validNodeID reports whether id is 1-64 of [A-Za-z0-9._-].
func validNodeID(id string) bool {
	if len(id) == 0 || len(id) > maxNodeIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}
