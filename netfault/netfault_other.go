//go:build !linux

package netfault

import (
	"log/slog"
	"net/netip"
)

// errNotLinux is returned on every other system: nftables and qdiscs are
// Linux interfaces.
var errNotLinux = &UnsupportedError{Missing: "Linux", Hint: "run wscluster-netfault in a Linux container"}

// Partition returns an *UnsupportedError outside Linux.
func Partition([]netip.Addr) error { return errNotLinux }

// Degrade returns an *UnsupportedError outside Linux.
func Degrade(Degradation, string) (string, error) { return "", errNotLinux }

// Heal returns an *UnsupportedError outside Linux.
func Heal(string) error { return errNotLinux }

// ReadStatus returns an *UnsupportedError outside Linux.
func ReadStatus(string) (Status, error) { return Status{}, errNotLinux }

// ResetConnections returns an *UnsupportedError outside Linux.
func ResetConnections([]netip.Addr, ResetOptions) (ResetResult, error) {
	return ResetResult{}, errNotLinux
}

// ControlServer is the control socket of a serve process, which exists
// only on Linux.
type ControlServer struct{}

// ListenControl returns an *UnsupportedError outside Linux.
func ListenControl(string, *slog.Logger) (*ControlServer, error) { return nil, errNotLinux }

// Serve returns an *UnsupportedError outside Linux.
func (*ControlServer) Serve() error { return errNotLinux }

// Close does nothing outside Linux.
func (*ControlServer) Close() error { return nil }
