package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"syscall"

	"github.com/moby/moby/client"
)

// Labels on every network and container of the topology.
const (
	// LabelTest marks a resource of the wscluster test suite, value "1".
	LabelTest = "wscluster.test"
	// LabelRun is the run id, Options.RunID.
	LabelRun = "wscluster.run"
	// LabelOwnerPID and LabelOwnerHost name the process that created the
	// resource, so that a later run removes it only once that process is
	// gone.
	LabelOwnerPID  = "wscluster.owner.pid"
	LabelOwnerHost = "wscluster.owner.host"
	// LabelRole is node, redis, sidecar or network, and LabelNode the node
	// id or redis, for people reading docker ps.
	LabelRole = "wscluster.role"
	LabelNode = "wscluster.node"
)

// Values of LabelRole.
const (
	roleNode    = "node"
	roleRedis   = "redis"
	roleSidecar = "sidecar"
	roleNetwork = "network"
)

// labels returns the labels of one resource of the run.
func (t *Topology) labels(role, node string) map[string]string {
	l := map[string]string{
		LabelTest:      "1",
		LabelRun:       t.opts.RunID,
		LabelOwnerPID:  strconv.Itoa(os.Getpid()),
		LabelOwnerHost: hostname(),
		LabelRole:      role,
	}
	if node != "" {
		l[LabelNode] = node
	}
	return l
}

// hostname returns the name of this host, or "unknown" when the system does
// not tell; then no run removes another's resources as stale.
func hostname() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "unknown"
	}
	return name
}

// randomRunID returns "r" and 8 random hex digits.
func randomRunID() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("container topology: draw a run id: %w", err)
	}
	return "r" + hex.EncodeToString(b), nil
}

// stale reports whether the labels name an owner process on this host
// that no longer runs. A resource of another host, or without a valid pid,
// is never stale: its owner cannot be checked from here.
func stale(labels map[string]string) bool {
	if labels[LabelOwnerHost] != hostname() || hostname() == "unknown" {
		return false
	}
	pid, err := strconv.Atoi(labels[LabelOwnerPID])
	if err != nil || pid <= 0 {
		return false
	}
	return !processAlive(pid)
}

// processAlive sends signal 0 to pid. A process of another user, which
// rejects the signal with EPERM, is alive too.
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// removeStale removes the containers and then the networks labelled
// wscluster.test=1 whose owner process on this host is gone, and returns how
// many it removed.
func (d *dockerClient) removeStale(ctx context.Context, log *slog.Logger) (int, error) {
	return d.removeLabelled(ctx, log, client.Filters{}.Add("label", LabelTest+"=1"), stale)
}

// RemoveRun removes every container and network of the run runID, whatever
// its owner. Tests call it in their cleanup, so that a failed test leaves
// nothing behind even when Close did not run.
func RemoveRun(ctx context.Context, runID string) error {
	d, err := newDockerClient(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	filter := client.Filters{}.Add("label", LabelTest+"=1", LabelRun+"="+runID)
	_, err = d.removeLabelled(ctx, slog.Default(), filter, func(map[string]string) bool { return true })
	return err
}

// removeLabelled removes the containers, then the networks, that match
// filter and for whose labels remove returns true.
func (d *dockerClient) removeLabelled(ctx context.Context, log *slog.Logger, filter client.Filters, remove func(map[string]string) bool) (int, error) {
	containers, err := d.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		return 0, fmt.Errorf("container topology: list the containers labelled %s=1: %w", LabelTest, err)
	}
	removed := 0
	var errs []error
	for _, c := range containers.Items {
		if !remove(c.Labels) {
			continue
		}
		log.Info("removing a leftover container", "container", c.Names, "run", c.Labels[LabelRun], "owner_pid", c.Labels[LabelOwnerPID])
		if err := d.removeContainer(ctx, c.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}

	// A network can only go once no container uses it.
	networks, err := d.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		return removed, errors.Join(append(errs, fmt.Errorf("container topology: list the networks labelled %s=1: %w", LabelTest, err))...)
	}
	for _, n := range networks.Items {
		if !remove(n.Labels) {
			continue
		}
		log.Info("removing a leftover network", "network", n.Name, "run", n.Labels[LabelRun], "owner_pid", n.Labels[LabelOwnerPID])
		if _, err := d.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("remove the network %s: %w", n.Name, err))
			continue
		}
		removed++
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("container topology: remove leftovers: %w", err)
	}
	return removed, nil
}
