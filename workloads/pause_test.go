package workloads

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/history"
	"github.com/wscluster/wscluster/topology"
)

// startBinaryNode builds the wscluster binary and starts it as a single
// node on loopback. The process is killed when the test ends.
func startBinaryNode(t *testing.T) (*exec.Cmd, topology.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	binary := filepath.Join(t.TempDir(), "wscluster")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", binary, "github.com/wscluster/wscluster/cmd/wscluster").CombinedOutput()
	require.NoError(t, err, "go build failed:\n%s", out)

	addr := freeAddr(t)
	cmd := exec.Command(binary, "serve", "--listen", addr, "--node-id", "n1", "--engine", "none")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSCLUSTER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	node := topology.Node{ID: "n1", WSURL: "ws://" + addr + "/ws", HTTPURL: "http://" + addr}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(node.HTTPURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd, node
			}
		}
		require.True(t, time.Now().Before(deadline), "the node did not answer /healthz: %v", err)
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPausedNodeInfoThenDrop(t *testing.T) {
	cmd, node := startBinaryNode(t)
	rec := history.NewRecorder(nil)
	w, err := New("pubsub", Config{
		Nodes: []topology.Node{node}, Recorder: rec, Seed: 9, OpTimeout: 300 * time.Millisecond,
		PublishersPerNode: 1, SubscribersPerNode: 1, PublishRate: 20,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.Setup(ctx))

	// Freeze the node for 2.5 s in the middle of the main phase. The
	// publisher needs about 1.5 s of it to time out and drop, because the
	// drop waits up to a second for the reply to its close frame.
	runCtx, stopRun := context.WithTimeout(ctx, 4500*time.Millisecond)
	defer stopRun()
	ran := make(chan error, 1)
	go func() { ran <- w.Run(runCtx) }()
	time.Sleep(700 * time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGSTOP))
	pausedAt := rec.Now()
	time.Sleep(2500 * time.Millisecond)
	resumedAt := rec.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGCONT))
	require.NoError(t, <-ran)
	require.NoError(t, w.Close())
	ops := rec.Ops()
	requireWellFormed(t, ops)

	// The publisher (process 0) times out, drops its connection and
	// connects again after the resume, as epoch 2.
	var publisher []history.Op
	for _, op := range ops {
		if op.Process == 0 {
			publisher = append(publisher, op)
		}
	}
	info := firstIndex(publisher, func(op history.Op) bool { return is(history.Info, history.FPublish)(op) && op.Epoch == 1 })
	require.GreaterOrEqual(t, info, 0, "publish info on the paused node")
	require.Greater(t, len(publisher), info+2)
	assert.True(t, is(history.Invoke, history.FDrop)(publisher[info+1]), "drop after the info")
	assert.True(t, is(history.Ok, history.FDrop)(publisher[info+2]), "drop completes")
	assert.Equal(t, 1, publisher[info+2].Epoch)

	reconnected := firstIndex(publisher, func(op history.Op) bool { return is(history.Ok, history.FConnect)(op) && op.Epoch == 2 })
	require.Greater(t, reconnected, info, "connect ok of epoch 2")
	assert.Greater(t, publisher[reconnected].Time, resumedAt)
	assert.Positive(t, firstIndex(publisher, func(op history.Op) bool { return is(history.Ok, history.FPublish)(op) && op.Epoch == 2 }))

	// Dials to the frozen node time out and back off instead of spinning.
	attempts := selectOps(publisher, func(op history.Op) bool {
		return is(history.Invoke, history.FConnect)(op) && op.Time > pausedAt && op.Time < resumedAt
	})
	assert.NotEmpty(t, attempts)
	assert.LessOrEqual(t, len(attempts), 8, "connect attempts during a 2.5 s pause")
	for _, op := range selectOps(publisher, is(history.Fail, history.FConnect)) {
		assert.Equal(t, 2, op.Epoch, "a failed connect keeps the next epoch")
	}
}

// firstIndex returns the index of the first op that match accepts, or -1.
func firstIndex(ops []history.Op, match func(op history.Op) bool) int {
	for i, op := range ops {
		if match(op) {
			return i
		}
	}
	return -1
}
