package faultproxy_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/wscluster/wscluster/internal/faultproxy"
)

func TestProxyStateFollowsFaults(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.addr())
	assert.Equal(t, faultproxy.State{}, p.State(), "a new proxy")
	assert.False(t, p.State().Faulty(), "a new proxy")

	p.Blackhole()
	assert.Equal(t, faultproxy.State{Blackholed: true}, p.State(), "after Blackhole")
	p.Cut()
	assert.Equal(t, faultproxy.State{Cut: true}, p.State(), "after Cut")
	p.SetLatency(50*time.Millisecond, 10*time.Millisecond)
	assert.Equal(t, faultproxy.State{Cut: true, Latency: 50 * time.Millisecond, Jitter: 10 * time.Millisecond}, p.State(), "after SetLatency")

	p.Heal()
	assert.True(t, p.State().Faulty(), "Heal keeps the latency")
	p.SetLatency(0, 0)
	assert.Equal(t, faultproxy.State{}, p.State(), "after Heal and SetLatency(0, 0)")
	assert.False(t, p.State().Faulty(), "after Heal and SetLatency(0, 0)")

	// The proxy forwards again once State shows no fault.
	roundTrip(t, dial(t, p.Addr()), "ping")
}
