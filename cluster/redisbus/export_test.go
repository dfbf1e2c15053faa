package redisbus

import "github.com/wscluster/wscluster/cluster/wire"

// EncodeMessage exposes the channel message format to the external tests,
// so they can play a peer that Redis delivers late.
func EncodeMessage(session uint64, env *wire.Envelope) []byte {
	return appendMessage(nil, header{session: session}, env)
}
