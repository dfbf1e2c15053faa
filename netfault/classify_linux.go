//go:build linux

package netfault

import (
	"errors"
	"fmt"
	"syscall"
)

// capNetAdmin is UnsupportedError.Missing when the kernel returned EPERM.
const capNetAdmin = "CAP_NET_ADMIN"

// hints name what a caller can use instead of each missing feature.
var hints = map[string]string{
	"nf_tables":  "isolate the container with docker network disconnect instead",
	"nft_numgen": "run degrade without --loss, or drop all traffic with partition",
	"sch_netem":  "add latency with a proxy instead",
	"sch_prio":   "degrade the whole device (no --peers) or add latency with a proxy instead",
	"cls_u32":    "degrade the whole device (no --peers) or add latency with a proxy instead",
	capNetAdmin:  "run the sidecar with --cap-add NET_ADMIN --user 0",

	// The NFQUEUE delay fallback.
	"nfqueue_serve":   "start \"wscluster-netfault serve\" in this network namespace, which delays packets through NFQUEUE, or add latency with a proxy",
	"nfnetlink":       "add latency with a proxy instead",
	"nfnetlink_queue": "add latency with a proxy instead",
	"xt_NFQUEUE":      "add latency with a proxy instead",

	// Connection resets.
	"sock_destroy": "reset with --mechanism nftables-reset, which rejects the peers' packets with TCP resets for a moment",
	"nft_reject":   "kill the process or partition the link instead",
}

// classify turns the kernel's "not supported" errors for feature into an
// *UnsupportedError and wraps any other error with the feature's name.
// ENOENT is how the kernel reports an unknown qdisc kind or nftables
// expression, because it could not find (or load) the module.
func classify(feature string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, syscall.EPERM):
		return &UnsupportedError{Missing: capNetAdmin, Hint: hints[capNetAdmin], Err: err}
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.EOPNOTSUPP),
		errors.Is(err, syscall.EPROTONOSUPPORT), errors.Is(err, syscall.EAFNOSUPPORT):
		return &UnsupportedError{Missing: feature, Hint: hints[feature], Err: err}
	}
	return fmt.Errorf("%s: %w", feature, err)
}
