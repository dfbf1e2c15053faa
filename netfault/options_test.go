package netfault

import (
	"errors"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAddrsValid(t *testing.T) {
	addrs, err := ParseAddrs(" 172.18.0.2, fd00::2,172.18.0.2,::ffff:172.18.0.3,")
	require.NoError(t, err)
	want := []netip.Addr{
		netip.MustParseAddr("172.18.0.2"),
		netip.MustParseAddr("fd00::2"),
		netip.MustParseAddr("172.18.0.3"),
	}
	assert.Equal(t, want, addrs, "duplicates dropped, IPv4-mapped unmapped, order kept")
}

func TestParseAddrsEmpty(t *testing.T) {
	for _, list := range []string{"", " ", ",,"} {
		addrs, err := ParseAddrs(list)
		require.NoError(t, err, "list %q", list)
		assert.Empty(t, addrs, "list %q", list)
	}
}

func TestParseAddrsInvalid(t *testing.T) {
	for _, list := range []string{"n2", "172.18.0.300", "172.18.0.0/16", "0.0.0.0", "::", "fe80::1%eth0", "172.18.0.2:5410"} {
		_, err := ParseAddrs(list)
		require.Error(t, err, "list %q", list)
		assert.True(t, errors.Is(err, ErrInvalid), "list %q: %v", list, err)
	}
}

func TestLossPermille(t *testing.T) {
	cases := []struct {
		loss float64
		want uint32
	}{{0, 0}, {0.001, 1}, {0.05, 50}, {0.5, 500}, {0.0996, 100}, {1, 1000}}
	for _, c := range cases {
		got, err := lossPermille(c.loss)
		require.NoError(t, err, "loss %v", c.loss)
		assert.Equal(t, c.want, got, "loss %v", c.loss)
	}
}

func TestLossPermilleInvalid(t *testing.T) {
	for _, loss := range []float64{-0.1, 1.01, 0.0001, math.NaN(), math.Inf(1)} {
		_, err := lossPermille(loss)
		assert.ErrorIs(t, err, ErrInvalid, "loss %v", loss)
	}
}

func TestDegradationValidate(t *testing.T) {
	valid := []Degradation{
		{},
		{Device: "eth1", Delay: 100 * time.Millisecond, Jitter: 20 * time.Millisecond, Loss: 0.1},
		{Delay: MaxDelay, Peers: []netip.Addr{netip.MustParseAddr("10.0.0.2")}},
	}
	for _, d := range valid {
		assert.NoError(t, d.Validate(), "%+v", d)
	}
	invalid := []Degradation{
		{Device: "a-name-longer-than-15"},
		{Device: "eth0 up"},
		{Delay: -time.Millisecond},
		{Delay: MaxDelay + time.Millisecond},
		{Jitter: 10 * time.Millisecond},
		{Loss: 2},
		{Peers: []netip.Addr{{}}},
		{Peers: []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.2")}},
	}
	for _, d := range invalid {
		assert.ErrorIs(t, d.Validate(), ErrInvalid, "%+v", d)
	}
}

func TestUnsupportedErrorMessage(t *testing.T) {
	err := error(&UnsupportedError{Missing: "sch_netem", Hint: "add latency with a proxy instead", Err: errors.New("no such file or directory")})
	assert.ErrorIs(t, err, ErrUnsupported)
	assert.Equal(t, "unsupported: sch_netem is not available in this kernel or network namespace; add latency with a proxy instead (no such file or directory)", err.Error())
}
