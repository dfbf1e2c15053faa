package wsconn

import (
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loopbackPair returns a connected TCP pair on loopback; everything written
// to the first end is read and counted on a goroutine.
func loopbackPair(tb testing.TB) (*net.TCPConn, chan int64) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(tb, err)
	server, err := ln.Accept()
	require.NoError(tb, err)
	tb.Cleanup(func() {
		_ = client.Close()
		_ = server.Close()
	})
	read := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, server)
		read <- n
	}()
	return client.(*net.TCPConn), read
}

// writerConn returns a Conn over nc that writes without the raw socket
// when blocking is set, as it does over TLS.
func writerConn(tb testing.TB, nc *net.TCPConn, blocking bool) *Conn {
	tb.Helper()
	cfg := Config{}.WithDefaults()
	c := &Conn{nc: nc, cfg: &cfg}
	if !blocking {
		raw, err := nc.SyscallConn()
		require.NoError(tb, err)
		c.out.raw = raw
	}
	return c
}

func TestWriteBatchDeliversEveryByte(t *testing.T) {
	for _, blocking := range []bool{false, true} {
		nc, read := loopbackPair(t)
		c := writerConn(t, nc, blocking)

		// 3000 frames exceed IOV_MAX, so one batch takes several writev
		// calls; 200 KiB exceed the socket buffer, so the fast path
		// stops part way and the blocking write finishes.
		var batch [][]byte
		total := 0
		for i := range 3000 {
			frame := TextFrame(patternPayload(1 + i%130))
			batch = append(batch, frame)
			total += len(frame)
		}
		require.NoError(t, c.writeBatch(batch, false), "blocking %v", blocking)
		require.NoError(t, nc.CloseWrite())
		assert.Equal(t, int64(total), <-read, "blocking %v", blocking)
	}
}

func TestSkipWrittenNeverModifiesFrames(t *testing.T) {
	a, b := []byte("abc"), []byte("defg")
	batch := [][]byte{a, b}
	rest := skipWritten(batch, 4)
	assert.Equal(t, [][]byte{[]byte("efg")}, rest)
	assert.Equal(t, []byte("defg"), batch[1], "the caller's batch must stay whole")
	assert.Empty(t, skipWritten(batch, 7))
	assert.Equal(t, batch, skipWritten(batch, 0))
}

// BenchmarkWriteOneFrame compares the two ways a writer writes a batch of
// one 100-byte frame, the usual batch of a subscriber that keeps up. One is
// a non-blocking writev on the raw socket. The other is a blocking write
// under a fresh deadline, which costs two runtime timer updates more.
func BenchmarkWriteOneFrame(b *testing.B) {
	frame := TextFrame(patternPayload(100))
	for _, mode := range []struct {
		name     string
		blocking bool
	}{{"nonblocking", false}, {"deadline", true}} {
		b.Run(mode.name, func(b *testing.B) {
			nc, _ := loopbackPair(b)
			c := writerConn(b, nc, mode.blocking)
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				// A fresh batch each time, as the queue gives: a blocking
				// write empties the slice it is given.
				if err := c.writeBatch([][]byte{frame}, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
