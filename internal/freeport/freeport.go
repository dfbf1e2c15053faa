// Package freeport picks TCP ports on 127.0.0.1 for servers that must know
// their port before they start, such as a node restarted on the same
// address.
//
// A port that the kernel hands out for "127.0.0.1:0" comes from the
// ephemeral range, which outgoing connections draw their source ports from
// too. Between picking such a port and binding it, any connect on the
// machine may take it, and the bind fails with "address already in use".
// This package picks ports below the ephemeral range instead, where only
// another listener can collide, and never hands out one port twice in a
// process.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Bounds of the ports handed out when the ephemeral range cannot be read.
// Linux's default ephemeral range starts at 32768.
const (
	defaultLow  = 20000
	defaultHigh = 32768
)

// ErrNoPort is returned, wrapped, when no free port was found.
var ErrNoPort = errors.New("freeport: no free port")

var (
	mu     sync.Mutex
	issued = map[int]bool{}
)

// Get returns a port on 127.0.0.1 that was free a moment ago, below the
// ephemeral range.
func Get() (int, error) {
	low, high := portRange()
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		port := low + rand.IntN(high-low)
		if issued[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		issued[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("%w between %d and %d after 200 tries", ErrNoPort, low, high)
}

// portRange returns the ports below the kernel's ephemeral range, reading
// the range from /proc on Linux.
func portRange() (int, int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultLow, defaultHigh
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return defaultLow, defaultHigh
	}
	start, err := strconv.Atoi(fields[0])
	if err != nil || start < 2048 {
		return defaultLow, defaultHigh
	}
	return max(1024, start-12768), start
}
