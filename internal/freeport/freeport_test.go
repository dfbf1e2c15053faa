package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestGetReturnsBindablePortsBelowEphemeral(t *testing.T) {
	low, high := portRange()
	seen := map[int]bool{}
	for range 20 {
		port, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if port < low || port >= high {
			t.Errorf("port %d outside [%d, %d)", port, low, high)
		}
		if seen[port] {
			t.Errorf("port %d handed out twice", port)
		}
		seen[port] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Errorf("bind %d: %v", port, err)
			continue
		}
		ln.Close()
	}
}
