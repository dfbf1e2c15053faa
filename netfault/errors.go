package netfault

import (
	"errors"
	"fmt"
)

// ErrUnsupported is matched by every error that reports a kernel or
// namespace that cannot apply a fault: a missing nf_tables or qdisc kind, or
// a missing CAP_NET_ADMIN. Callers that can fall back (docker network
// disconnect for isolation, a proxy for latency) test for it with errors.Is.
var ErrUnsupported = errors.New("unsupported")

// ErrInvalid is matched by every error about an invalid option value, such
// as an address that does not parse or a loss fraction above 1.
var ErrInvalid = errors.New("invalid fault option")

// UnsupportedError reports the kernel feature or capability that is missing.
type UnsupportedError struct {
	// Missing is the kernel feature or capability, such as "nf_tables",
	// "sch_netem", "sch_prio", "cls_u32" or "CAP_NET_ADMIN".
	Missing string
	// Hint is what the caller can do instead.
	Hint string
	// Err is the error the kernel returned.
	Err error
}

// Error returns one line that starts with "unsupported:" and names the
// missing feature, so scripts can match it.
func (e *UnsupportedError) Error() string {
	msg := fmt.Sprintf("unsupported: %s is not available in this kernel or network namespace", e.Missing)
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	if e.Err != nil {
		msg += fmt.Sprintf(" (%v)", e.Err)
	}
	return msg
}

// Unwrap returns the kernel's error.
func (e *UnsupportedError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnsupported) true for every UnsupportedError.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }
