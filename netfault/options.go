package netfault

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"
)

// TableName is the name of the nftables table (family inet) that holds every
// rule this package installs.
const TableName = "wscluster"

// DefaultDevice is the interface Degrade uses when Degradation.Device is
// empty: the first interface of a Docker container on a bridge network.
const DefaultDevice = "eth0"

// MaxDelay bounds Degradation.Delay and Degradation.Jitter. netem stores
// them in microseconds in 32 bits, and a fault test needs far less.
const MaxDelay = time.Minute

// Delay mechanisms, the values of Degradation.DelayMechanism.
const (
	// DelayNetem delays packets with a netem qdisc in the kernel.
	DelayNetem = "netem"
	// DelayNFQueue sends packets through NFQUEUE to a running serve
	// process, which accepts each one after the delay. It needs no qdisc.
	DelayNFQueue = "nfqueue"
)

// DefaultControlSocket is the unix socket on which "wscluster-netfault
// serve" takes requests from the other commands in the same container.
const DefaultControlSocket = "/run/wscluster-netfault/control.sock"

// ifNameSize is IFNAMSIZ of Linux: an interface name has at most 15 bytes
// plus the terminating NUL.
const ifNameSize = 16

// Degradation describes the link quality Degrade installs. The zero value
// (apart from Device) removes a previous degradation.
type Degradation struct {
	// Device is the interface to degrade; empty means DefaultDevice.
	Device string
	// Delay is added to every egress packet (to Peers only, if set).
	Delay time.Duration
	// Jitter varies Delay uniformly by up to this much; it needs Delay > 0.
	Jitter time.Duration
	// DelayMechanism is DelayNetem, DelayNFQueue, or empty to try netem
	// first and fall back to NFQUEUE where the kernel lacks netem.
	DelayMechanism string
	// Loss is the fraction of ingress packets dropped on Device (from Peers
	// only, if set), from 0 to 1 in steps of 0.001.
	Loss float64
	// Peers limits the degradation to traffic with these addresses; empty
	// degrades all traffic on Device.
	Peers []netip.Addr
}

// device returns Device or DefaultDevice.
func (d Degradation) device() string {
	if d.Device == "" {
		return DefaultDevice
	}
	return d.Device
}

// Validate checks every field and returns an error matching ErrInvalid that
// names the bad value.
func (d Degradation) Validate() error {
	dev := d.device()
	if len(dev) >= ifNameSize || strings.ContainsAny(dev, "/ \x00") {
		return fmt.Errorf("%w: device %q: an interface name has 1-15 bytes without '/', space or NUL", ErrInvalid, dev)
	}
	if d.Delay < 0 || d.Delay > MaxDelay {
		return fmt.Errorf("%w: delay %v: use 0 to %v", ErrInvalid, d.Delay, MaxDelay)
	}
	if d.Jitter < 0 || d.Jitter > MaxDelay {
		return fmt.Errorf("%w: jitter %v: use 0 to %v", ErrInvalid, d.Jitter, MaxDelay)
	}
	if d.Jitter > 0 && d.Delay == 0 {
		return fmt.Errorf("%w: jitter %v without a delay: jitter varies the delay, so set --delay too", ErrInvalid, d.Jitter)
	}
	switch d.DelayMechanism {
	case "", DelayNetem, DelayNFQueue:
	default:
		return fmt.Errorf("%w: delay mechanism %q: use %q, %q or empty for netem with a fallback to nfqueue", ErrInvalid, d.DelayMechanism, DelayNetem, DelayNFQueue)
	}
	if _, err := lossPermille(d.Loss); err != nil {
		return err
	}
	for _, p := range d.Peers {
		if err := checkAddr(p); err != nil {
			return err
		}
	}
	return nil
}

// lossPermille converts a loss fraction to the threshold of the nftables
// rule "numgen random mod 1000 < threshold".
func lossPermille(loss float64) (uint32, error) {
	if math.IsNaN(loss) || loss < 0 || loss > 1 {
		return 0, fmt.Errorf("%w: loss %v: use a fraction from 0 to 1, such as 0.05", ErrInvalid, loss)
	}
	permille := math.Round(loss * 1000)
	if loss > 0 && permille == 0 {
		return 0, fmt.Errorf("%w: loss %v is below the resolution of 0.001: use 0 or at least 0.001", ErrInvalid, loss)
	}
	return uint32(permille), nil
}

// ParseAddrs parses a comma-separated list of IPv4 or IPv6 addresses. It
// returns nil for an empty list, drops duplicates and unmaps IPv4-mapped
// IPv6 addresses, because the kernel handles those packets as IPv4.
func ParseAddrs(list string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	seen := make(map[netip.Addr]bool)
	for _, field := range strings.Split(list, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		addr, err := netip.ParseAddr(field)
		if err != nil {
			return nil, fmt.Errorf("%w: address %q: use an IPv4 or IPv6 address such as 172.18.0.2: %w", ErrInvalid, field, err)
		}
		addr = addr.Unmap()
		if err := checkAddr(addr); err != nil {
			return nil, err
		}
		if !seen[addr] {
			seen[addr] = true
			addrs = append(addrs, addr)
		}
	}
	return addrs, nil
}

// checkAddr rejects addresses no rule can usefully match.
func checkAddr(addr netip.Addr) error {
	switch {
	case !addr.IsValid():
		return fmt.Errorf("%w: empty address", ErrInvalid)
	case addr.Zone() != "":
		return fmt.Errorf("%w: address %v: remove the zone, rules match the address only", ErrInvalid, addr)
	case addr.IsUnspecified():
		return fmt.Errorf("%w: address %v is unspecified: name the peer's own address", ErrInvalid, addr)
	case addr.Is4In6():
		return fmt.Errorf("%w: address %v is IPv4-mapped: use the IPv4 form %v", ErrInvalid, addr, addr.Unmap())
	}
	return nil
}
