package redisbus

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/cluster/wire"
)

func TestMessageRoundTrip(t *testing.T) {
	env := &wire.Envelope{Kind: wire.KindPublish, Origin: "n1", Incarnation: 7, Seq: 3,
		Message: backplane.Message{ID: "n1:x:3", Channel: "room", Data: []byte(`{"a":1}`), QoS: 1}}
	for _, to := range []string{"", "n2"} {
		b := appendMessage(nil, header{to: to, session: 42}, env)
		h, got, err := decodeMessage(b)
		require.NoError(t, err)
		require.Equal(t, to, h.to)
		require.Equal(t, uint64(42), h.session)
		require.Equal(t, env, got)
	}
}

func TestMessageRejectsMalformed(t *testing.T) {
	valid := appendMessage(nil, header{to: "n2", session: 1}, &wire.Envelope{Kind: wire.KindHeartbeat, Origin: "n1", Incarnation: 1})
	cases := map[string][]byte{
		"empty":              nil,
		"unknown version":    append([]byte{9}, valid[1:]...),
		"addressee too long": {headerVersion, 200, 'a'},
		"truncated session":  valid[:1+1+2+4],
		"bad envelope":       append(append([]byte{}, valid[:1+1+2+8]...), 0xff, 0xff),
	}
	for name, b := range cases {
		_, _, err := decodeMessage(b)
		require.Error(t, err, name)
		require.True(t, errors.Is(err, errMalformed) || errors.Is(err, wire.ErrMalformed), "%s: %v", name, err)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add(appendMessage(nil, header{to: "n2", session: 1}, &wire.Envelope{Kind: wire.KindHeartbeat, Origin: "n1", Incarnation: 1}))
	f.Add([]byte{headerVersion, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, env, err := decodeMessage(b)
		if err != nil {
			return
		}
		again := appendMessage(nil, h, env)
		require.Equal(t, b, again, "a decoded message must encode to the same bytes")
	})
}
