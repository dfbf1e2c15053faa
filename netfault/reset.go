package netfault

import (
	"fmt"
	"time"
)

// Reset mechanisms, the values of ResetOptions.Mechanism and
// ResetResult.Mechanism.
const (
	// ResetSockDestroy aborts each TCP socket with SOCK_DESTROY of
	// sock_diag, as "ss -K" does. The kernel sends a RST to the peer and
	// fails the local socket with ECONNABORTED at once, even when the
	// connection is idle.
	ResetSockDestroy = "sock-destroy"
	// ResetNFTables rejects the peers' TCP packets with a RST for
	// ResetOptions.Hold. Only a connection that sends a packet in that
	// time is reset, so an idle one survives.
	ResetNFTables = "nftables-reset"
)

// DefaultResetHold is how long ResetNFTables rejects packets. A
// connection that sends nothing in that time is not reset, so set a hold
// longer than the heartbeat interval of the links you reset.
const DefaultResetHold = 300 * time.Millisecond

// maxResetHold bounds ResetOptions.Hold: the peers cannot connect at all
// while the reject rules are in place.
const maxResetHold = 10 * time.Second

// ResetOptions selects how ResetConnections resets connections.
type ResetOptions struct {
	// Mechanism is ResetSockDestroy, ResetNFTables, or empty to use
	// sock-destroy and fall back to nftables-reset on a kernel without
	// CONFIG_INET_DIAG_DESTROY.
	Mechanism string
	// Hold is how long ResetNFTables rejects packets; 0 means
	// DefaultResetHold.
	Hold time.Duration
}

// ResetResult reports what ResetConnections did.
type ResetResult struct {
	Mechanism string `json:"mechanism"`
	// Connections counts the TCP connections with the peers that were
	// open when the reset began. With ResetNFTables, those that sent
	// nothing during the hold survive.
	Connections int `json:"connections"`
}

// Validate checks the options and returns an error matching ErrInvalid.
func (o ResetOptions) Validate() error {
	switch o.Mechanism {
	case "", ResetSockDestroy, ResetNFTables:
	default:
		return fmt.Errorf("%w: reset mechanism %q: use %q, %q or empty for the first that works", ErrInvalid, o.Mechanism, ResetSockDestroy, ResetNFTables)
	}
	if o.Hold < 0 || o.Hold > maxResetHold {
		return fmt.Errorf("%w: reset hold %v: use 0 (for %v) up to %v", ErrInvalid, o.Hold, DefaultResetHold, maxResetHold)
	}
	return nil
}

func (o ResetOptions) hold() time.Duration {
	if o.Hold == 0 {
		return DefaultResetHold
	}
	return o.Hold
}
