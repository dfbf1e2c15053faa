package container

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// StartMarker is the msg of the JSON line that the topology appends to a
// container's log before each start, so that each incarnation of a node
// can be found in its log.
const StartMarker = "container topology: starting container"

// Timings of container control.
const (
	// exitTimeout bounds the wait for a container to stop after docker
	// kill when the caller's context has no deadline.
	exitTimeout = 10 * time.Second
	// exitPoll is the time between two state checks after docker kill.
	exitPoll = 50 * time.Millisecond
	// tailWait bounds the wait for the log copy of a failed start, so that
	// the error can quote the container's last lines.
	tailWait = 2 * time.Second
	// tailLines bounds the log tail quoted in errors.
	tailLines = 20
)

// memberState is the life-cycle state of a container.
type memberState int

const (
	stateNew memberState = iota
	stateRunning
	statePaused
	stateKilled
)

func (s memberState) String() string {
	return [...]string{"never started", "running", "paused", "killed"}[s]
}

// member is the container of one node or of Redis. The container is created
// at the first start and started again by each restart, so it keeps its
// name, hostname, configuration and published ports; Docker may give it
// another IP address.
type member struct {
	t       *Topology
	name    string // node id or topology.Redis
	image   string
	custom  []testcontainers.ContainerCustomizer // the rest of the request
	logPath string
	log     *slog.Logger

	// mu serializes start, kill, pause, resume and remove. The lifecycle
	// hooks run inside start, with mu held.
	mu       sync.Mutex
	ctr      *testcontainers.DockerContainer
	state    memberState
	starts   int
	closed   bool // set by remove: the container never starts again
	logSince time.Time
	logDone  chan struct{} // closed when the current start's log copy ends
}

// newMember returns the member of a container, which is created at the
// first start with image and custom. The lifecycle hooks write the start
// marker and copy the logs.
func (t *Topology) newMember(name, image string, custom []testcontainers.ContainerCustomizer) *member {
	m := &member{
		t:       t,
		name:    name,
		image:   image,
		logPath: t.logPath(name),
		log:     t.log.With("node", name),
	}
	hooks := testcontainers.ContainerLifecycleHooks{
		PreStarts:  []testcontainers.ContainerHook{m.beforeStart},
		PostStarts: []testcontainers.ContainerHook{m.afterStart},
	}
	m.custom = append(custom,
		testcontainers.WithLogger(tcLogger{t.log}),
		testcontainers.WithAdditionalLifecycleHooks(hooks))
	return m
}

// containerName returns the Docker name of a container of the run.
func (t *Topology) containerName(name string) string {
	return "wscluster-" + t.opts.RunID + "-" + name
}

// start creates and starts the container the first time, and starts it
// again after a kill, and waits until its wait strategy passes, for at
// most cfg.StartTimeout. A container that does not get there is killed,
// and the error quotes the end of its log.
func (m *member) start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return fmt.Errorf("start %s: the topology is closed", m.name)
	case m.state == stateRunning || m.state == statePaused:
		return fmt.Errorf("start %s: it is %s; Kill it first", m.name, m.state)
	}

	ctx, cancel := context.WithTimeout(ctx, m.t.cfg.StartTimeout)
	defer cancel()
	var err error
	if m.ctr == nil {
		m.ctr, err = testcontainers.Run(ctx, m.image, m.custom...)
	} else {
		err = m.ctr.Start(ctx)
	}
	if err != nil {
		return m.failedStart(err)
	}
	m.state = stateRunning
	m.log.Info("container started", "container", m.ctr.GetContainerID()[:12], "start", m.starts)
	return nil
}

// failedStart kills a container that did not come up, and returns err with
// the end of the container's log.
func (m *member) failedStart(err error) error {
	if m.ctr == nil {
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	m.state = stateKilled
	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	if killErr := m.killLocked(ctx); killErr != nil {
		m.log.Warn("kill after a failed start failed", "error", killErr)
	}
	if m.logDone != nil {
		select {
		case <-m.logDone:
		case <-time.After(tailWait):
		}
	}
	return fmt.Errorf("start %s: %w; last lines of %s:\n%s", m.name, err, m.logPath, tail(m.logPath))
}

// beforeStart appends the start marker to the log and notes the time from
// which the new start's log lines are copied.
func (m *member) beforeStart(_ context.Context, c testcontainers.Container) error {
	m.starts++
	line, err := json.Marshal(struct {
		Time      string `json:"time"`
		Level     string `json:"level"`
		Msg       string `json:"msg"`
		Node      string `json:"node"`
		Start     int    `json:"start"`
		Image     string `json:"image"`
		Container string `json:"container"`
	}{time.Now().Format(time.RFC3339Nano), "INFO", StartMarker, m.name, m.starts, m.image, c.GetContainerID()})
	if err != nil {
		return fmt.Errorf("encode the start marker of %s: %w", m.name, err)
	}
	f, err := os.OpenFile(m.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open the log of %s: %w", m.name, err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write the start marker to %s: %w", m.logPath, err)
	}
	m.logSince = time.Now()
	return nil
}

// afterStart starts copying the log lines of this start to the log file.
// Docker keeps the output of every earlier start too, so the copy requests
// the lines since beforeStart only. The copy ends when the container stops.
func (m *member) afterStart(_ context.Context, c testcontainers.Container) error {
	done := make(chan struct{})
	m.logDone = done
	id, since := c.GetContainerID(), m.logSince
	m.t.logCopies.Add(1)
	go func() {
		defer m.t.logCopies.Done()
		defer close(done)
		if err := m.copyLogs(id, since); err != nil {
			m.log.Warn("copying the container log failed", "error", err, "log", m.logPath)
		}
	}()
	return nil
}

// copyLogs appends the container's stdout and stderr since the given time
// to the log file until the container stops or Close gives up waiting.
func (m *member) copyLogs(id string, since time.Time) error {
	f, err := os.OpenFile(m.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	rc, err := m.t.docker.ContainerLogs(m.t.copyCtx, id, client.ContainerLogsOptions{
		ShowStdout: true,
		ShowStderr: true,
		Follow:     true,
		Since:      fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
	})
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = stdcopy.StdCopy(f, f, rc)
	if err != nil && m.t.copyCtx.Err() != nil {
		return nil
	}
	return err
}

// kill sends SIGKILL to the container and waits until it stopped. A
// paused container is killed too, and left thawed.
func (m *member) kill(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != stateRunning && m.state != statePaused {
		return fmt.Errorf("kill %s: it is %s, not running; Restart it instead", m.name, m.state)
	}
	if err := m.killLocked(ctx); err != nil {
		return err
	}
	m.state = stateKilled
	m.log.Info("container killed", "signal", "SIGKILL")
	return nil
}

// killLocked sends SIGKILL and waits within ctx, or within exitTimeout
// when ctx has no deadline, until Docker reports the container stopped.
func (m *member) killLocked(ctx context.Context) error {
	id := m.ctr.GetContainerID()
	if _, err := m.t.docker.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		if !strings.Contains(err.Error(), "is not running") {
			return fmt.Errorf("kill %s: docker kill: %w", m.name, err)
		}
	}

	// The freezer holds SIGKILL until the cgroup thaws, so a paused
	// container is thawed after the signal is queued.
	if m.state == statePaused {
		if _, err := m.t.docker.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{}); err != nil {
			m.log.Debug("unpause after kill", "error", err)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, exitTimeout)
		defer cancel()
	}
	for {
		res, err := m.t.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return fmt.Errorf("kill %s: inspect: %w", m.name, err)
		}
		if !res.Container.State.Running {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kill %s: the container still runs after SIGKILL: %w", m.name, ctx.Err())
		case <-time.After(exitPoll):
		}
	}
}

// pause freezes a running container with docker pause.
func (m *member) pause(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != stateRunning {
		return fmt.Errorf("pause %s: it is %s; only a running container can be paused", m.name, m.state)
	}
	if _, err := m.t.docker.ContainerPause(ctx, m.ctr.GetContainerID(), client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("pause %s: docker pause: %w", m.name, err)
	}
	m.state = statePaused
	m.log.Info("container paused")
	return nil
}

// resume thaws a paused container with docker unpause.
func (m *member) resume(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != statePaused {
		return fmt.Errorf("resume %s: it is %s; only a paused container can be resumed", m.name, m.state)
	}
	if _, err := m.t.docker.ContainerUnpause(ctx, m.ctr.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("resume %s: docker unpause: %w", m.name, err)
	}
	m.state = stateRunning
	m.log.Info("container resumed")
	return nil
}

// remove removes the container, running or not, and keeps it from being
// started again.
func (m *member) remove(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.ctr == nil {
		return nil
	}
	if err := m.t.docker.removeContainer(ctx, m.ctr.GetContainerID()); err != nil {
		return fmt.Errorf("%s: %w", m.name, err)
	}
	return nil
}

// running reports whether the container runs or is paused, so that its
// network namespace exists.
func (m *member) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state == stateRunning || m.state == statePaused
}

// stateString describes the container's state for errors.
func (m *member) stateString() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state.String()
}

// containerID returns the container's id, or "" before the first start.
func (m *member) containerID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctr == nil {
		return ""
	}
	return m.ctr.GetContainerID()
}

// ip returns the container's address on the network nw.
func (m *member) ip(ctx context.Context, nw string) (netip.Addr, error) {
	id := m.containerID()
	if id == "" {
		return netip.Addr{}, fmt.Errorf("%s has no container yet", m.name)
	}
	res, err := m.t.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("inspect %s: %w", m.name, err)
	}
	ep := res.Container.NetworkSettings.Networks[nw]
	if ep == nil || !ep.IPAddress.IsValid() {
		return netip.Addr{}, fmt.Errorf("%s has no address on the network %s", m.name, nw)
	}
	return ep.IPAddress.Unmap(), nil
}

// tail returns the last lines of the log at path.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	from := max(0, info.Size()-8<<10)
	data, err := io.ReadAll(io.NewSectionReader(f, from, info.Size()-from))
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-tailLines):], "\n")
}
