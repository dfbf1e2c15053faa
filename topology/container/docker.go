package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/network"
)

// ErrDockerUnavailable is returned, wrapped, when the Docker daemon cannot
// be reached. Tests skip on it, and the suite reports that the container
// topology cannot run here.
var ErrDockerUnavailable = errors.New("container topology: Docker is not available")

// ErrImageMissing is returned, wrapped, when an image is not on the Docker
// host. Nothing is pulled, because the images are built locally.
var ErrImageMissing = errors.New("container topology: image not found")

// ryukEnv disables the reaper container of testcontainers-go: its image
// would have to be pulled, and the topology removes its own containers by
// label, also after a crash.
const ryukEnv = "TESTCONTAINERS_RYUK_DISABLED"

// pingTimeout bounds the first contact with the daemon.
const pingTimeout = 10 * time.Second

// dockerClient is the Docker API client of one topology.
type dockerClient struct {
	*testcontainers.DockerClient
}

// newDockerClient connects to the daemon that testcontainers-go finds
// (DOCKER_HOST, the Docker context or the default socket) and pings it.
func newDockerClient(ctx context.Context) (*dockerClient, error) {
	disableReaper()
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w; start the daemon or set DOCKER_HOST", ErrDockerUnavailable, err)
	}
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("%w: ping the daemon: %w; start it or set DOCKER_HOST", ErrDockerUnavailable, err)
	}
	return &dockerClient{cli}, nil
}

// disableReaper sets TESTCONTAINERS_RYUK_DISABLED=true unless the
// environment sets it. testcontainers-go reads its configuration once, so
// this must run before its first use in the process.
func disableReaper() {
	if _, ok := os.LookupEnv(ryukEnv); !ok {
		_ = os.Setenv(ryukEnv, "true")
	}
}

// Available pings the Docker daemon. It returns nil when the ping
// succeeds, and an error wrapping ErrDockerUnavailable otherwise.
func Available(ctx context.Context) error {
	d, err := newDockerClient(ctx)
	if err != nil {
		return err
	}
	return d.Close()
}

// checkImages returns an error wrapping ErrImageMissing for the first image
// that is not on the Docker host.
func (d *dockerClient) checkImages(ctx context.Context, images ...string) error {
	for _, image := range images {
		if _, err := d.ImageInspect(ctx, image); err != nil {
			return fmt.Errorf("%w: %s: %w; build it with scripts/build-images.sh, or set Options.Image or Options.RedisImage to an image on this Docker host",
				ErrImageMissing, image, err)
		}
	}
	return nil
}

// createNetwork creates the run's bridge network. Docker picks the subnet.
func (d *dockerClient) createNetwork(ctx context.Context, labels map[string]string) (*testcontainers.DockerNetwork, error) {
	nw, err := network.New(ctx, network.WithLabels(labels))
	if err != nil {
		return nil, fmt.Errorf("container topology: create the network: %w", err)
	}
	return nw, nil
}

// removeNetwork removes the network; a network already gone is no error.
func (d *dockerClient) removeNetwork(ctx context.Context, nw *testcontainers.DockerNetwork) error {
	if _, err := d.NetworkRemove(ctx, nw.ID, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove the network %s: %w", nw.Name, err)
	}
	return nil
}

// removeContainer removes a container at once, running or paused; a
// container already gone is no error.
func (d *dockerClient) removeContainer(ctx context.Context, id string) error {
	_, err := d.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("remove container %.12s: %w", id, err)
	}
	return nil
}

// isNotFound reports whether err is the daemon's "no such container" or
// "no such network".
func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// tcLogger sends the log lines of testcontainers-go to slog at debug level,
// so that they do not mix with the suite's output.
type tcLogger struct{ log *slog.Logger }

var _ tclog.Logger = tcLogger{}

func (l tcLogger) Printf(format string, v ...any) {
	l.log.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)), "source", "testcontainers")
}
