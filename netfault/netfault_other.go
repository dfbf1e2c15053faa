//go:build !linux

package netfault

import "net/netip"

// errNotLinux is returned on every other system: nftables and qdiscs are
// Linux interfaces.
var errNotLinux = &UnsupportedError{Missing: "Linux", Hint: "run wscluster-netfault in a Linux container"}

// Partition returns an *UnsupportedError outside Linux.
func Partition([]netip.Addr) error { return errNotLinux }

// Degrade returns an *UnsupportedError outside Linux.
func Degrade(Degradation) error { return errNotLinux }

// Heal returns an *UnsupportedError outside Linux.
func Heal() error { return errNotLinux }

// ReadStatus returns an *UnsupportedError outside Linux.
func ReadStatus() (Status, error) { return Status{}, errNotLinux }
