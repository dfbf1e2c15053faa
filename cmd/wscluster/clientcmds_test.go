package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/server"
)

// cliWaitTimeout bounds every wait in these tests.
const cliWaitTimeout = 5 * time.Second

// lockedBuffer is a bytes.Buffer that a command goroutine writes while the
// test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.String()
}

// startCLITestNode starts a real node on loopback and returns its /ws URL.
func startCLITestNode(t *testing.T) string {
	t.Helper()

	cfg := config.Default()
	cfg.NodeID = "cli1"
	node, err := server.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)

	ts := httptest.NewServer(node.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cliWaitTimeout)
		defer cancel()
		_ = node.Shutdown(ctx)
		ts.Close()
	})

	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
}

// startSub runs the sub command in a goroutine and waits until it has
// subscribed. The returned channel receives its exit status.
func startSub(t *testing.T, args []string, stdout, stderr *lockedBuffer) <-chan int {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 2*cliWaitTimeout)
	t.Cleanup(cancel)

	status := make(chan int, 1)
	go func() { status <- subCommand(ctx, args, stdout, stderr) }()

	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "subscribed to") },
		cliWaitTimeout, 5*time.Millisecond, "sub did not subscribe; stderr: %s", stderr)

	return status
}

// waitStatus returns the exit status that a command goroutine sends.
func waitStatus(t *testing.T, status <-chan int) int {
	t.Helper()

	select {
	case code := <-status:
		return code
	case <-time.After(cliWaitTimeout):
		require.FailNow(t, "command did not exit", "waited %s", cliWaitTimeout)
		return -1
	}
}

// lines splits output into lines, ignoring white space at both ends.
func lines(output string) []string {
	return strings.Split(strings.TrimSpace(output), "\n")
}

func TestPubSubWithCount(t *testing.T) {
	url := startCLITestNode(t)
	var subOut, subErr lockedBuffer
	subStatus := startSub(t, []string{"--url", url, "--channel", "news,sport", "--count", "2"}, &subOut, &subErr)

	var pubOut, pubErr bytes.Buffer
	pubArgs := []string{"--url", url, "--channel", "sport", "--data", `{"n":1}`, "--qos", "1", "--count", "2", "--interval", "1ms"}
	require.Equal(t, 0, pubCommand(context.Background(), pubArgs, &pubOut, &pubErr), "stderr: %s", pubErr.String())
	msgIDs := lines(pubOut.String())
	require.Len(t, msgIDs, 2)

	require.Equal(t, 0, waitStatus(t, subStatus), "stderr: %s", subErr.String())
	printed := lines(subOut.String())
	require.Len(t, printed, 2)
	for i, line := range printed {
		var notification struct {
			Method string         `json:"method"`
			Params client.Message `json:"params"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &notification), "line %q", line)
		assert.Equal(t, "message", notification.Method)
		assert.Equal(t, "sport", notification.Params.Channel)
		assert.Equal(t, msgIDs[i], notification.Params.MsgID)
		assert.JSONEq(t, `{"n":1}`, string(notification.Params.Data))
		assert.NotContains(t, line, "\n ", "line is not compact")
	}
}

func TestSubWithMemberPrintsRoster(t *testing.T) {
	url := startCLITestNode(t)
	var subOut, subErr lockedBuffer
	args := []string{"--url", url, "--channel", "room", "--member", "alice", "--info", `{"seat":3}`, "--count", "1"}
	subStatus := startSub(t, args, &subOut, &subErr)

	var pubOut, pubErr bytes.Buffer
	require.Equal(t, 0, pubCommand(context.Background(), []string{"--url", url, "--channel", "room", "--data", `"hi"`}, &pubOut, &pubErr), "stderr: %s", pubErr.String())
	require.Equal(t, 0, waitStatus(t, subStatus), "stderr: %s", subErr.String())

	printed := lines(subOut.String())
	require.Len(t, printed, 2)
	var roster struct {
		Channel string          `json:"channel"`
		Members []client.Member `json:"members"`
	}
	require.NoError(t, json.Unmarshal([]byte(printed[0]), &roster), "line %q", printed[0])
	assert.Equal(t, "room", roster.Channel)
	require.Len(t, roster.Members, 1)
	assert.Equal(t, "alice", roster.Members[0].Member)
	require.Len(t, roster.Members[0].Connections, 1)
	assert.JSONEq(t, `{"seat":3}`, string(roster.Members[0].Connections[0].Info))
	assert.Contains(t, printed[1], `"method":"message"`)
}

func TestMembersPrintsIndentedRoster(t *testing.T) {
	url := startCLITestNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), cliWaitTimeout)
	defer cancel()
	member, err := client.Dial(ctx, url, client.Options{})
	require.NoError(t, err)
	defer member.Close()
	_, err = member.Join(ctx, "room", "bob", nil)
	require.NoError(t, err)

	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, membersCommand(ctx, []string{"--url", url, "--channel", "room"}, &stdout, &stderr), "stderr: %s", stderr.String())

	var roster []client.Member
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &roster), "output %q", stdout.String())
	require.Len(t, roster, 1)
	assert.Equal(t, "bob", roster[0].Member)
	assert.Contains(t, stdout.String(), "\n  ", "output is not indented")

	stdout.Reset()
	require.Equal(t, 0, membersCommand(ctx, []string{"--url", url, "--channel", "empty"}, &stdout, &stderr))
	assert.Equal(t, "[]\n", stdout.String())
}

func TestPubRejectsPlainWordData(t *testing.T) {
	var stdout, stderr bytes.Buffer
	status := pubCommand(context.Background(), []string{"--channel", "news", "--data", "hello"}, &stdout, &stderr)

	assert.Equal(t, 2, status)
	assert.Contains(t, stderr.String(), `--data '"hello"'`)
	assert.Empty(t, stdout.String())
}

func TestClientCommandsBadFlags(t *testing.T) {
	cases := []struct {
		name    string
		command func(context.Context, []string, io.Writer, io.Writer) int
		args    []string
		status  int
		stderr  string
	}{
		{"pub unknown flag", pubCommand, []string{"--nope"}, 2, "flag provided but not defined"},
		{"pub missing channel", pubCommand, []string{"--data", "1"}, 2, "--channel is missing"},
		{"pub bad qos", pubCommand, []string{"--channel", "c", "--data", "1", "--qos", "2"}, 2, "use 0 or 1"},
		{"pub zero count", pubCommand, []string{"--channel", "c", "--data", "1", "--count", "0"}, 2, "--count 0"},
		{"pub extra argument", pubCommand, []string{"--channel", "c", "--data", "1", "extra"}, 2, `unexpected argument "extra"`},
		{"pub help", pubCommand, []string{"-h"}, 0, "usage: wscluster pub"},
		{"sub missing channel", subCommand, nil, 2, "--channel is missing"},
		{"sub empty channel name", subCommand, []string{"--channel", "a,,b"}, 2, "empty name"},
		{"sub info without member", subCommand, []string{"--channel", "a", "--info", "{}"}, 2, "--info needs --member"},
		{"members missing channel", membersCommand, nil, 2, "--channel is missing"},
		{"members bad timeout", membersCommand, []string{"--channel", "a", "--timeout", "0s"}, 2, "--timeout 0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			status := tc.command(context.Background(), tc.args, &stdout, &stderr)

			assert.Equal(t, tc.status, status)
			assert.Contains(t, stderr.String(), tc.stderr)
		})
	}
}

func TestPubConnectionRefused(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "ws://" + listener.Addr().String() + "/ws"
	require.NoError(t, listener.Close())

	var stdout, stderr bytes.Buffer
	status := pubCommand(context.Background(), []string{"--url", url, "--channel", "c", "--data", "1"}, &stdout, &stderr)

	assert.Equal(t, 1, status)
	assert.Contains(t, stderr.String(), "cannot connect to "+url+": connection refused")
	assert.Contains(t, stderr.String(), "bin/wscluster serve")
}

func TestPubInvalidChannelFails(t *testing.T) {
	url := startCLITestNode(t)

	var stdout, stderr bytes.Buffer
	status := pubCommand(context.Background(), []string{"--url", url, "--channel", "bad\x01name", "--data", "1"}, &stdout, &stderr)

	assert.Equal(t, 1, status)
	assert.Contains(t, stderr.String(), "rpc error 1001")
	assert.Contains(t, stderr.String(), "1-255 bytes")
}

func TestClientURLFromEnvironment(t *testing.T) {
	url := startCLITestNode(t)
	t.Setenv("WSCLUSTER_URL", url)

	var stdout, stderr bytes.Buffer
	status := membersCommand(context.Background(), []string{"--channel", "room"}, &stdout, &stderr)

	assert.Equal(t, 0, status, "stderr: %s", stderr.String())
	assert.Equal(t, "[]\n", stdout.String())
}
