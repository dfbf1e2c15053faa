package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
)

// redisArgv returns the command line of the topology's redis-server:
// loopback only, on port, with persistence off, so that a restart starts
// empty like a crashed cache would.
func redisArgv(binary string, port int, dir string) []string {
	return []string{binary,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
	}
}

// lookupRedis returns the path of redis-server on PATH.
func lookupRedis() (string, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("--engine redis needs redis-server on PATH; install it (Debian: apt-get install redis-server): %w", err)
	}
	return path, nil
}

// pingRedis sends one PING on a fresh connection and expects +PONG, so
// that a started redis-server counts as serving only once it replies to
// commands, not when it merely accepts connections.
func pingRedis(ctx context.Context, addr string) error {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			return err
		}
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(reply) != "+PONG" {
		return errors.New("unexpected reply to PING: " + strconv.Quote(reply))
	}
	return nil
}
