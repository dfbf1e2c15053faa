//go:build linux

package netfault

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Partition drops every packet from and to the addresses in drop, replacing
// the previous partition in one nftables transaction. An empty drop removes
// the partition. Loss rules that Degrade installed stay.
func Partition(drop []netip.Addr) error {
	for _, addr := range drop {
		if err := checkAddr(addr); err != nil {
			return err
		}
	}
	return replaceChains(partitionChains(drop), "nf_tables")
}

// Degrade replaces the previous degradation with d: delay and jitter on
// egress, and random loss on ingress. It returns the delay mechanism it
// used, DelayNetem or DelayNFQueue, or "" when d has no delay.
//
// The delay uses netem, or the NFQUEUE of the serve process that listens
// on the control socket, as d.DelayMechanism selects. An empty control
// rules out NFQUEUE. Loss uses nftables, which drops packets after they
// left the sender, as a lossy path does, and works on kernels without
// sch_netem. Degrade changes the delay first, so on a kernel without
// either delay mechanism it returns an *UnsupportedError before touching
// the loss rules. A partition stays.
//
// NOTE: the netem paths (netem root, and prio with a netem child and u32
// filters for --peers) have not run on a kernel that has sch_netem and
// sch_prio, because the development kernel lacks both.
func Degrade(d Degradation, control string) (string, error) {
	if err := d.Validate(); err != nil {
		return "", err
	}
	link, err := netlink.LinkByName(d.device())
	if err != nil {
		return "", fmt.Errorf("device %q not found in this network namespace: pass the container's interface with --dev: %w", d.device(), err)
	}
	mechanism, err := applyDelay(link, d, control)
	if err != nil {
		return "", err
	}

	permille, err := lossPermille(d.Loss)
	if err != nil {
		return "", err
	}
	// replaceChains lists the table's chains before it sends the batch, and
	// that fails with "nf_tables" on a kernel without nftables. A rejected
	// batch therefore means the numgen expression is missing.
	if err := replaceChains([]chainRules{lossChain(d.device(), d.Peers, permille)}, "nft_numgen"); err != nil {
		return "", err
	}
	return mechanism, nil
}

// Heal deletes the table inet wscluster and every root qdisc Degrade
// installed on any interface, and sets the NFQUEUE delay of the serve
// process at control, if one listens, to 0. A kernel without nf_tables
// has no table to delete, so Heal then only removes the other delays.
func Heal(control string) error {
	// The serve process releases the packets it holds first, because
	// deleting the table makes the kernel drop them.
	var errs []error
	if control != "" {
		if _, err := callControl(control, controlRequest{Op: opDelay}); err != nil && !errors.Is(err, errNoServe) {
			errs = append(errs, err)
		}
	}
	if err := healRules(); err != nil && !kernelMissing(err) {
		errs = append(errs, err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return errors.Join(append(errs, classify("rtnetlink", err))...)
	}
	for _, link := range links {
		if err := removeDelay(link); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ReadStatus counts the rules in the table, lists every qdisc and asks the
// serve process at control, if one listens, for its NFQUEUE delay. A
// kernel without nf_tables counts as 0 rules.
func ReadStatus(control string) (Status, error) {
	rules, err := countRules()
	if err != nil && !kernelMissing(err) {
		return Status{}, err
	}
	qdiscs, err := listQdiscs()
	if err != nil {
		return Status{}, err
	}
	queue, err := queueStatus(control)
	if err != nil {
		return Status{}, err
	}
	return Status{NFTRules: rules, Qdiscs: qdiscs, NFQueue: queue}, nil
}
