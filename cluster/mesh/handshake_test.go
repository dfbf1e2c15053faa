package mesh

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHelloRoundTrip(t *testing.T) {
	h := &hello{version: protocolVersion, nodeID: "node-1.a_b", incarnation: 1<<63 + 5, addr: "[::1]:5410"}
	h.nonce[0], h.nonce[nonceSize-1] = 1, 2
	raw := appendHello(nil, h)

	got, gotRaw, err := readHello(bytes.NewReader(raw))
	require.NoError(t, err)
	assert.Equal(t, h, got)
	assert.Equal(t, raw, gotRaw)
}

func TestReadHelloRejects(t *testing.T) {
	valid := appendHello(nil, &hello{version: protocolVersion, nodeID: "a", incarnation: 1, addr: "127.0.0.1:5410"})
	with := func(offset int, b ...byte) []byte {
		out := bytes.Clone(valid)
		copy(out[offset:], b)
		return out
	}
	cases := []struct {
		name  string
		input []byte
		want  error
	}{
		{"wrong magic", with(0, 'X'), errBadMagic},
		{"other version", with(4, 2), errVersion},
		{"empty node id", with(5, 0), errInvalidNodeID},
		{"long node id", with(5, maxNodeIDLen+1), errInvalidNodeID},
		{"node id with slash", with(6, '/'), errInvalidNodeID},
		{"empty address", with(15, 0, 0), errInvalidAddr},
		{"address without port", appendHello(nil, &hello{version: protocolVersion, nodeID: "a", addr: "node-a"}), errInvalidAddr},
		{"truncated", valid[:len(valid)-1], io.ErrUnexpectedEOF},
		{"empty", nil, io.EOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readHello(bytes.NewReader(tc.input))
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func TestProofBindsRoleAndHellos(t *testing.T) {
	secret := []byte("s")
	dialer, acceptor := []byte("dialer hello"), []byte("acceptor hello")
	proof := computeProof(secret, roleDialer, dialer, acceptor)

	assert.Len(t, proof, proofSize)
	assert.NotEqual(t, proof, computeProof(secret, roleAcceptor, dialer, acceptor), "reflected role")
	assert.NotEqual(t, proof, computeProof(secret, roleDialer, acceptor, dialer), "swapped hellos")
	assert.NotEqual(t, proof, computeProof(secret, roleDialer, dialer, []byte("acceptor hellp")), "other nonce")
	assert.NotEqual(t, proof, computeProof([]byte("t"), roleDialer, dialer, acceptor), "other secret")
	assert.NotEqual(t, proof, computeProof(secret, roleDialer, []byte("dialer hell"), []byte("oacceptor hello")), "shifted boundary")
}

// tcpPair returns both ends of a loopback TCP connection. The handshake
// needs socket buffers, because both sides write before they read.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, _ := ln.Accept()
		accepted <- conn
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	c2 := <-accepted
	require.NotNil(t, c2)
	t.Cleanup(func() {
		_ = c1.Close()
		_ = c2.Close()
	})
	return c1, c2
}

// runPair runs both sides of a handshake over a loopback connection.
func runPair(t *testing.T, dialerSecret, acceptorSecret string) (dialerErr, acceptorErr error) {
	t.Helper()
	c1, c2 := tcpPair(t)
	d, err := newHandshake(c1, roleDialer, []byte(dialerSecret), "d", 1, "127.0.0.1:1")
	require.NoError(t, err)
	a, err := newHandshake(c2, roleAcceptor, []byte(acceptorSecret), "a", 2, "127.0.0.1:2")
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() { done <- a.authenticate() }()
	dialerErr = d.authenticate()
	acceptorErr = <-done
	if dialerErr == nil {
		assert.Equal(t, "a", d.peer.nodeID)
	}
	if acceptorErr == nil {
		assert.Equal(t, "d", a.peer.nodeID)
	}
	return dialerErr, acceptorErr
}

func TestAuthenticateSecrets(t *testing.T) {
	dErr, aErr := runPair(t, "same", "same")
	assert.NoError(t, dErr)
	assert.NoError(t, aErr)

	dErr, aErr = runPair(t, "", "")
	assert.NoError(t, dErr, "open mesh")
	assert.NoError(t, aErr, "open mesh")

	dErr, aErr = runPair(t, "one", "two")
	assert.ErrorIs(t, dErr, errAuth)
	assert.ErrorIs(t, aErr, errAuth)

	dErr, aErr = runPair(t, "", "one side only")
	assert.ErrorIs(t, dErr, errAuth)
	assert.ErrorIs(t, aErr, errAuth)
}

func TestVerdictErrors(t *testing.T) {
	assert.NoError(t, verdictAccept.err())
	assert.ErrorIs(t, verdictSelf.err(), errSelf)
	assert.ErrorIs(t, verdictDuplicateID.err(), errDuplicateID)
	assert.ErrorIs(t, verdictDuplicateLink.err(), errDuplicateLink)
	assert.ErrorIs(t, verdict(99).err(), errBadVerdict)
	for _, err := range []error{nil, errSelf, errDuplicateID, errDuplicateLink, ErrClosed} {
		v := verdictFor(err)
		if err == nil || errors.Is(err, ErrClosed) {
			continue
		}
		assert.ErrorIs(t, v.err(), err)
	}
	assert.Equal(t, "", handshakeRejectReason(verdictClosing.err()))
}
