package suite_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/checker"
	"github.com/wscluster/wscluster/suite"
)

// requireDocker skips the test without a reachable Docker daemon, except
// in CI, where a missing daemon must fail rather than pass by skipping.
func requireDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts containers")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("docker info failed in CI: %v", err)
		}
		t.Skipf("no Docker daemon: %v", err)
	}
}

// buildBrokenImage builds a node image from the deliberately broken build
// tag, staged in a temporary folder so it cannot race the real image's
// build context.
func buildBrokenImage(t *testing.T, tags, image string) {
	t.Helper()
	cmd := exec.Command("../scripts/build-images.sh", "--no-redis", "--tags", tags,
		"--node-image", image, "--stage-dir", t.TempDir())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build-images.sh: %s", out)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })
}

func TestBrokenPurgeIsCaughtOnContainers(t *testing.T) {
	requireDocker(t)
	t.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	const image = "wscluster/node:broken-nopurge"
	buildBrokenImage(t, "wscluster_broken_nopurge", image)

	cfg := shortConfig(t, "")
	cfg.Topology, cfg.Image = "container", image
	cfg.Workload, cfg.Nemesis, cfg.Duration = "presence", "kill", 10*time.Second
	out, err := suite.Run(context.Background(), cfg)
	require.NoError(t, err)

	assert.Equal(t, checker.Invalid, out.Results.Valid)
	ghosts := resultOf(t, out.Results, "ghosts")
	assert.Equal(t, checker.Invalid, ghosts.Valid, ghosts.Summary)
	assert.Positive(t, ghosts.Counts["ghost"]+ghosts.Counts["slow-purge"], "ghost anomalies: %v", ghosts.Counts)
	assert.FileExists(t, filepath.Join(out.Dir, "logs", "n1.log"))
}
