// Package loadgen is the load generator of the benchmark: it opens WebSocket
// connections to wscluster or to a centrifuge-based peer server, subscribes
// them, publishes timestamped messages and measures delivery.
//
// It runs in a process of its own (cmd/wscluster-loadgen), so that its CPU
// is not charged to the server, and it reports that CPU, so that a saturated
// generator shows up as such. The driver (package bench) controls it with
// lines on standard input and reads events and the result as JSON lines on
// standard output.
package loadgen

import (
	"errors"
	"fmt"
	"time"
)

// Modes accepted in Config.Mode.
const (
	// ModeFanout publishes to channels with subscribers and measures
	// delivery rate and latency.
	ModeFanout = "fanout"
	// ModeIdle opens connections that each subscribe to a channel and then
	// stay idle, so that the driver can read the server's memory.
	ModeIdle = "idle"
)

// ErrInvalidConfig wraps every rejected Config.
var ErrInvalidConfig = errors.New("invalid load generator config")

// Config describes one load generator run.
type Config struct {
	// Protocol is ProtocolWSCluster or ProtocolCentrifuge.
	Protocol string
	// Mode is ModeFanout or ModeIdle.
	Mode string
	// PublishURLs are the ws:// URLs publishers connect to, taken in turn.
	PublishURLs []string
	// SubscribeURLs are the ws:// URLs subscribers and idle connections
	// connect to, taken in turn.
	SubscribeURLs []string
	// ChannelPrefix starts every channel name, so that several generator
	// processes use channels of their own.
	ChannelPrefix string
	// Channels is the number of channels.
	Channels int
	// SubscribersPerChannel is the number of subscriber connections of each
	// channel (fanout mode).
	SubscribersPerChannel int
	// PublishersPerChannel is the number of publisher connections of each
	// channel (fanout mode). Default 1.
	PublishersPerChannel int
	// Rate is the target of publishes per second over all publishers. Zero
	// means closed loop: each publisher keeps Window publishes in flight
	// that not every subscriber has received yet.
	Rate float64
	// Window is the closed-loop limit of publishes in flight per publisher.
	// Default 32.
	Window int
	// PayloadBytes is the size of each published data object, at least 64.
	PayloadBytes int
	// Warmup runs before the measurement window; Duration is the window.
	Warmup, Duration time.Duration
	// Drain bounds the wait for messages in flight after publishing stops.
	// Default 5s.
	Drain time.Duration
	// IdleConns is the number of connections of idle mode.
	IdleConns int
	// DialConcurrency bounds the connections being opened at once.
	// Default 64.
	DialConcurrency int
	// ReadBufferBytes is the read buffer of each subscriber; idle
	// connections use 2 KiB. Default 64 KiB.
	ReadBufferBytes int
}

// Validate sets defaults and checks c.
func (c *Config) Validate() error {
	if _, err := newDialect(c.Protocol); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.PublishersPerChannel <= 0 {
		c.PublishersPerChannel = 1
	}
	if c.Window <= 0 {
		c.Window = 32
	}
	if c.Drain <= 0 {
		c.Drain = 5 * time.Second
	}
	if c.DialConcurrency <= 0 {
		c.DialConcurrency = 64
	}
	if c.ReadBufferBytes <= 0 {
		c.ReadBufferBytes = 64 << 10
	}
	if c.Channels <= 0 {
		return fmt.Errorf("%w: channels is %d; want at least 1", ErrInvalidConfig, c.Channels)
	}
	if len(c.SubscribeURLs) == 0 {
		return fmt.Errorf("%w: no subscribe URL; pass --sub-url at least once", ErrInvalidConfig)
	}
	switch c.Mode {
	case ModeFanout:
		return c.validateFanout()
	case ModeIdle:
		if c.IdleConns <= 0 {
			return fmt.Errorf("%w: idle mode needs --idle-conns of at least 1, got %d", ErrInvalidConfig, c.IdleConns)
		}
		return nil
	default:
		return fmt.Errorf("%w: mode %q; want %s or %s", ErrInvalidConfig, c.Mode, ModeFanout, ModeIdle)
	}
}

func (c *Config) validateFanout() error {
	switch {
	case len(c.PublishURLs) == 0:
		return fmt.Errorf("%w: no publish URL; pass --pub-url at least once", ErrInvalidConfig)
	case c.SubscribersPerChannel <= 0:
		return fmt.Errorf("%w: subscribers per channel is %d; want at least 1", ErrInvalidConfig, c.SubscribersPerChannel)
	case c.PayloadBytes < 64:
		return fmt.Errorf("%w: payload of %d bytes; want at least 64 to hold the timestamp", ErrInvalidConfig, c.PayloadBytes)
	case c.Duration <= 0:
		return fmt.Errorf("%w: duration %v; want more than 0", ErrInvalidConfig, c.Duration)
	case c.Rate < 0:
		return fmt.Errorf("%w: rate %v; want 0 (closed loop) or more", ErrInvalidConfig, c.Rate)
	}
	return nil
}

// channelName returns the name of channel i.
func (c *Config) channelName(i int) string {
	return c.ChannelPrefix + "ch" + fmt.Sprint(i)
}

// Result holds the figures of one generator process. Counts cover the
// whole run unless their name starts with Window.
type Result struct {
	Mode     string `json:"mode"`
	Protocol string `json:"protocol"`
	// Conns is the number of connections opened.
	Conns int `json:"conns"`
	// Publishes counts publishes sent; PublishErrors the error replies.
	Publishes     int64 `json:"publishes"`
	PublishAcks   int64 `json:"publish_acks"`
	PublishErrors int64 `json:"publish_errors"`
	// Expected is Publishes less PublishErrors, times the subscribers of
	// each channel; Received counts the deliveries that arrived.
	Expected int64 `json:"expected"`
	Received int64 `json:"received"`
	// Lost is Expected less Received after the drain, or 0.
	Lost int64 `json:"lost"`
	// WindowDelivered counts deliveries received in the measurement window.
	WindowDelivered int64   `json:"window_delivered"`
	WindowSeconds   float64 `json:"window_seconds"`
	// WindowPublishes counts publishes sent in the measurement window.
	WindowPublishes int64 `json:"window_publishes"`
	// Latency is the sparse histogram of publish-to-receipt latency of
	// the window's deliveries (see histogram.Histogram.Sparse).
	Latency [][2]int64 `json:"latency,omitempty"`
	// CPUSeconds is this process's user and system CPU in the window.
	CPUSeconds float64 `json:"cpu_seconds"`
	// Stalls counts closed-loop waits that timed out, each a publish that
	// some subscriber did not receive within a second.
	Stalls int64 `json:"stalls"`
	// Disconnects counts connections the server closed during the run.
	Disconnects int64 `json:"disconnects"`
}

// Event is one line on the generator's standard output.
type Event struct {
	// Event is "ready", "measure-begin", "measure-end" or "result".
	Event  string  `json:"event"`
	Conns  int     `json:"conns,omitempty"`
	Result *Result `json:"result,omitempty"`
}

// Control lines the driver writes to the generator's standard input.
const (
	ControlStart = "start"
	ControlStop  = "stop"
)
