package netfault

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// These tests need no privileges: the control socket is a plain unix
// socket until a delay binds the queue.

func TestControlStatusBeforeDelay(t *testing.T) {
	control := startControl(t)
	st, err := callControl(control, controlRequest{Op: opStatus})
	require.NoError(t, err)
	assert.Equal(t, QueueStatus{Queue: QueueNum}, st, "no queue is bound before the first delay")

	// A zero delay binds nothing either.
	st, err = callControl(control, controlRequest{Op: opDelay})
	require.NoError(t, err)
	assert.False(t, st.Bound)
}

func TestControlRejectsBadRequests(t *testing.T) {
	control := startControl(t)
	_, err := callControl(control, controlRequest{Op: "explode"})
	assert.ErrorContains(t, err, `unknown control operation "explode"`)
	_, err = callControl(control, controlRequest{Op: opDelay, Delay: -time.Second})
	assert.ErrorContains(t, err, "delay -1s")
}

func TestControlWithoutServe(t *testing.T) {
	_, err := callControl(filepath.Join(t.TempDir(), "none.sock"), controlRequest{Op: opStatus})
	require.ErrorIs(t, err, errNoServe)
	assert.ErrorContains(t, err, "wscluster-netfault serve")
	st, err := queueStatus(filepath.Join(t.TempDir(), "none.sock"))
	require.NoError(t, err, "status without a serve process is not an error")
	assert.Nil(t, st)
}

func TestFallbackErrorNamesAllMissing(t *testing.T) {
	netem := &UnsupportedError{Missing: "sch_netem", Err: syscall.ENOENT}

	err := fallbackError(netem, errNoServe)
	var unsupported *UnsupportedError
	require.ErrorAs(t, err, &unsupported)
	assert.Equal(t, "sch_netem", unsupported.Missing)
	assert.Contains(t, err.Error(), `start "wscluster-netfault serve"`)

	err = fallbackError(netem, &UnsupportedError{Missing: "nfnetlink_queue", Err: syscall.EOPNOTSUPP})
	require.ErrorAs(t, err, &unsupported)
	assert.Equal(t, "sch_netem and nfnetlink_queue", unsupported.Missing)

	// A missing capability or another failure is not hidden behind netem.
	noCap := &UnsupportedError{Missing: capNetAdmin, Err: syscall.EPERM}
	assert.Equal(t, noCap, fallbackError(netem, noCap))
	other := errors.New("device busy")
	err = fallbackError(netem, other)
	assert.ErrorIs(t, err, other)
	assert.NotErrorIs(t, err, ErrUnsupported, "a failed fallback is not a missing feature")
	assert.Contains(t, err.Error(), "lacks sch_netem")
	assert.Equal(t, other, fallbackError(nil, other), "without a netem attempt the NFQUEUE error stands alone")
}

func TestParseDiagMsg(t *testing.T) {
	msg := make([]byte, diagMsgSize)
	msg[0] = unix.AF_INET
	copy(msg[sockIDOffset+20:], []byte{172, 18, 0, 3})
	s, ok := parseDiagMsg(msg)
	require.True(t, ok)
	assert.Equal(t, netip.MustParseAddr("172.18.0.3"), s.remote)
	assert.Equal(t, msg[sockIDOffset:sockIDOffset+sockIDSize], s.id[:], "the socket id goes back to SOCK_DESTROY unchanged")

	// An IPv6 socket connected to an IPv4 peer has a mapped address.
	msg[0] = unix.AF_INET6
	mapped := netip.MustParseAddr("::ffff:172.18.0.3").As16()
	copy(msg[sockIDOffset+20:], mapped[:])
	s, ok = parseDiagMsg(msg)
	require.True(t, ok)
	assert.Equal(t, netip.MustParseAddr("172.18.0.3"), s.remote)

	_, ok = parseDiagMsg(msg[:diagMsgSize-1])
	assert.False(t, ok, "a short message")
	msg[0] = unix.AF_UNIX
	_, ok = parseDiagMsg(msg)
	assert.False(t, ok, "another address family")
}

func TestDiagMessageLayout(t *testing.T) {
	var id [sockIDSize]byte
	id[0] = 0x15
	m := diagMessage(unix.SOCK_DESTROY, 0, unix.AF_INET6, id)
	require.Len(t, m.Data, diagReqSize)
	assert.Equal(t, byte(unix.AF_INET6), m.Data[0])
	assert.Equal(t, byte(unix.IPPROTO_TCP), m.Data[1])
	assert.Equal(t, uint32(openStates), binary.NativeEndian.Uint32(m.Data[4:]))
	assert.Equal(t, byte(0x15), m.Data[8], "the socket id follows the states")
	assert.Zero(t, openStates&(1<<10), "LISTEN sockets are never reset")
}
