package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/wscluster/wscluster/netfault"
	"github.com/wscluster/wscluster/topology"
)

// netfaultPath is the fault helper in the node image.
const netfaultPath = "/wscluster-netfault"

// Exit status of wscluster-netfault when the kernel or the namespace
// cannot apply a fault; its stderr then starts with "unsupported:".
const exitUnsupported = 3

// errHelperUnsupported is matched by the error of a helper command that
// exited with exitUnsupported. It wraps topology.ErrUnsupported.
var errHelperUnsupported = fmt.Errorf("%w: wscluster-netfault reported", topology.ErrUnsupported)

// sidecar is a container that shares the network namespace of one node or
// of Redis and runs wscluster-netfault there, as root with CAP_NET_ADMIN.
// The node itself runs unprivileged. A sidecar dies with its namespace, so
// a restarted container gets a new one.
type sidecar struct {
	member string
	ctr    *testcontainers.DockerContainer
}

// startSidecar starts the sidecar of member name in the namespace of the
// container targetID.
func (t *Topology) startSidecar(ctx context.Context, name, targetID string) (*sidecar, error) {
	ctr, err := testcontainers.Run(ctx, t.opts.Image,
		testcontainers.WithLogger(tcLogger{t.log}),
		testcontainers.WithName(t.containerName(name)+"-netfault"),
		testcontainers.WithLabels(t.labels(roleSidecar, name)),
		testcontainers.WithEntrypoint(netfaultPath),
		testcontainers.WithCmd("serve"),
		testcontainers.WithConfigModifier(func(c *container.Config) { c.User = "0" }),
		testcontainers.WithHostConfigModifier(func(h *container.HostConfig) {
			h.NetworkMode = container.NetworkMode("container:" + targetID)
			h.CapAdd = []string{"NET_ADMIN"}
		}),
		testcontainers.WithWaitStrategy(wait.ForLog("netfault sidecar started").WithStartupTimeout(t.cfg.StartTimeout)),
	)
	if err != nil {
		var rmErr error
		if ctr != nil {
			rmErr = t.docker.removeContainer(context.WithoutCancel(ctx), ctr.GetContainerID())
		}
		return nil, errors.Join(fmt.Errorf("start the netfault sidecar of %s: %w", name, err), rmErr)
	}
	return &sidecar{member: name, ctr: ctr}, nil
}

// run runs wscluster-netfault with args in the sidecar and returns its
// output. A helper that reports a missing kernel feature gives an error
// matching errHelperUnsupported, with the helper's own message.
func (s *sidecar) run(ctx context.Context, args ...string) (string, error) {
	cmd := append([]string{netfaultPath}, args...)
	code, r, err := s.ctr.Exec(ctx, cmd, tcexec.Multiplexed())
	if err != nil {
		return "", fmt.Errorf("%s: docker exec %s: %w", s.member, strings.Join(cmd, " "), err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("%s: read the output of %s: %w", s.member, strings.Join(cmd, " "), err)
	}
	msg := strings.TrimSpace(string(out))
	switch code {
	case 0:
		return string(out), nil
	case exitUnsupported:
		return "", fmt.Errorf("%w in the namespace of %s: %s", errHelperUnsupported, s.member, lastLine(msg))
	default:
		return "", fmt.Errorf("%s: %s exited with status %d: %s", s.member, strings.Join(cmd, " "), code, msg)
	}
}

// status returns the rules, qdiscs and NFQUEUE delay in the sidecar's
// namespace.
func (s *sidecar) status(ctx context.Context) (netfault.Status, error) {
	out, err := s.run(ctx, "status")
	if err != nil {
		return netfault.Status{}, err
	}
	var st netfault.Status
	return st, s.decodeJSONLine("status", out, &st)
}

// degrade runs the helper's degrade with args and returns the delay
// mechanism it used, "" without a delay.
func (s *sidecar) degrade(ctx context.Context, args []string) (string, error) {
	out, err := s.run(ctx, append([]string{"degrade"}, args...)...)
	if err != nil {
		return "", err
	}
	var result struct {
		DelayMechanism string `json:"delay_mechanism"`
	}
	return result.DelayMechanism, s.decodeJSONLine("degrade", out, &result)
}

// reset runs the helper's reset for the connections with peers.
func (s *sidecar) reset(ctx context.Context, peers []string, hold time.Duration) (netfault.ResetResult, error) {
	out, err := s.run(ctx, "reset", "--peers", strings.Join(peers, ","), "--hold", hold.String())
	if err != nil {
		return netfault.ResetResult{}, err
	}
	var result netfault.ResetResult
	return result, s.decodeJSONLine("reset", out, &result)
}

// decodeJSONLine decodes the JSON object that the helper's command wrote
// as one line. The output may carry the helper's log lines too, because
// docker exec merges stdout and stderr.
func (s *sidecar) decodeJSONLine(command, out string, v any) error {
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), v); err != nil {
				return fmt.Errorf("%s: parse the output of %s %q: %w", s.member, command, line, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%s: %s printed no JSON object: %q", s.member, command, out)
}

// lastLine returns the last line of s, where the helper writes its error.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
