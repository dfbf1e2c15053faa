package local_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/topology"
	"github.com/wscluster/wscluster/topology/local"
	"github.com/wscluster/wscluster/topology/topologytest"
)

// crashChild runs in a child test process: it starts a two-node topology
// in dir, pauses n1, prints the HTTP URL of both nodes and waits to be
// killed. The binary path comes in argv[1].
func crashChild(dir string) int {
	topo, err := local.New(topology.Config{Engine: "none", Nodes: 2, Dir: dir, Binary: os.Args[1], StartTimeout: topologytest.WaitTimeout})
	if err == nil {
		err = topo.Start(context.Background())
	}
	if err == nil {
		_, err = topo.Pause(context.Background(), "n1")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	for _, n := range topo.Nodes() {
		fmt.Println(n.HTTPURL)
	}
	select {}
}

// TestSuiteCrashKillsNodes kills a suite without Close and requires that
// its nodes die too. The running node n2 checks Pdeathsig: the kernel's
// own cleanup of an orphaned process group (SIGHUP and SIGCONT) reaches
// only groups with a stopped process, such as paused n1.
func TestSuiteCrashKillsNodes(t *testing.T) {
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("the children die with the suite only through Linux's Pdeathsig")
	}
	suite := exec.Command(os.Args[0], binary)
	suite.Env = append(os.Environ(), crashChildEnv+"="+t.TempDir())
	suite.Stderr = os.Stderr
	stdout, err := suite.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, suite.Start())
	t.Cleanup(func() { _ = suite.Process.Kill(); _ = suite.Wait() })

	reader := bufio.NewReader(stdout)
	var urls []string
	for range 2 {
		line, err := reader.ReadString('\n')
		require.NoError(t, err, "the child suite printed no node URL")
		urls = append(urls, strings.TrimSpace(line))
	}
	_, _, err = topologytest.Get(urls[0] + "/healthz")
	require.Error(t, err, "n1 of the child suite is paused")
	code, _, err := topologytest.Get(urls[1] + "/healthz")
	require.NoError(t, err, "n2 of the child suite runs")
	require.Equal(t, 200, code)

	// The suite dies without Close. Gone nodes refuse connections, where a
	// paused one would time out.
	require.NoError(t, suite.Process.Signal(syscall.SIGKILL))
	_ = suite.Wait()
	for i, url := range urls {
		topologytest.WaitUntil(t, fmt.Sprintf("n%d of the killed suite to be gone", i+1), func() string {
			_, _, err := topologytest.Get(url + "/healthz")
			switch {
			case err == nil:
				return "the node still answers"
			case !strings.Contains(err.Error(), "connection refused"):
				return err.Error()
			}
			return ""
		})
	}
}
