package container

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/moby/moby/client"

	"github.com/wscluster/wscluster/netfault"
)

// SidecarStatus returns the helper's status in the namespace of a node or
// Redis.
func SidecarStatus(ctx context.Context, t *Topology, name string) (netfault.Status, error) {
	ns, err := t.network()
	if err != nil {
		return netfault.Status{}, err
	}
	ns.mu.Lock()
	sc := ns.sidecars[name]
	ns.mu.Unlock()
	if sc == nil {
		return netfault.Status{}, fmt.Errorf("%s has no sidecar", name)
	}
	return sc.status(ctx)
}

// ForceDisconnect makes every partition use docker network disconnect, as
// on a kernel without nftables.
func ForceDisconnect(t *Topology) error {
	ns, err := t.network()
	if err != nil {
		return err
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.forceDisconnect = true
	return nil
}

// RemoveStale removes the resources of owners that are gone, as Start does.
func RemoveStale(ctx context.Context) (int, error) {
	d, err := newDockerClient(ctx)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	return d.removeStale(ctx, slog.Default())
}

// ListLabelled returns the names of the containers and networks that
// carry the label key=value.
func ListLabelled(ctx context.Context, key, value string) (containers, networks []string, err error) {
	d, err := newDockerClient(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	filter := client.Filters{}.Add("label", key+"="+value)
	cs, err := d.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		return nil, nil, err
	}
	for _, c := range cs.Items {
		containers = append(containers, c.Names...)
	}
	ns, err := d.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		return nil, nil, err
	}
	for _, n := range ns.Items {
		networks = append(networks, n.Name)
	}
	return containers, networks, nil
}

// CheckImages returns an error wrapping ErrImageMissing when an image is
// not on the Docker host.
func CheckImages(ctx context.Context, images ...string) error {
	d, err := newDockerClient(ctx)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.checkImages(ctx, images...)
}
