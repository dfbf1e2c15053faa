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

// Degrade replaces the previous degradation with d: netem delay and jitter on
// egress, and random loss on ingress. Loss uses nftables, which drops
// packets after they left the sender, as a lossy path does, and works on
// kernels without sch_netem. Degrade changes the qdisc first, so on a kernel
// without netem it returns an *UnsupportedError before touching the loss
// rules. A partition stays.
//
// NOTE: the delay paths (netem root, and prio with a netem child and u32
// filters for --peers) have not run on a kernel that has sch_netem and
// sch_prio, because the development kernel lacks both.
func Degrade(d Degradation) error {
	if err := d.Validate(); err != nil {
		return err
	}
	link, err := netlink.LinkByName(d.device())
	if err != nil {
		return fmt.Errorf("device %q not found in this network namespace: pass the container's interface with --dev: %w", d.device(), err)
	}
	if d.Delay > 0 {
		err = installDelay(link, d.Delay, d.Jitter, d.Peers)
	} else {
		err = removeDelay(link)
	}
	if err != nil {
		return err
	}

	permille, err := lossPermille(d.Loss)
	if err != nil {
		return err
	}
	// replaceChains lists the table's chains before it sends the batch, and
	// that fails with "nf_tables" on a kernel without nftables. A rejected
	// batch therefore means the numgen expression is missing.
	return replaceChains([]chainRules{lossChain(d.device(), d.Peers, permille)}, "nft_numgen")
}

// Heal deletes the table inet wscluster and every root qdisc Degrade
// installed on any interface. A kernel without nf_tables has no table to
// delete, so Heal then only removes qdiscs.
func Heal() error {
	var errs []error
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

// ReadStatus counts the rules in the table and lists every qdisc. A kernel
// without nf_tables counts as 0 rules.
func ReadStatus() (Status, error) {
	rules, err := countRules()
	if err != nil && !kernelMissing(err) {
		return Status{}, err
	}
	qdiscs, err := listQdiscs()
	if err != nil {
		return Status{}, err
	}
	return Status{NFTRules: rules, Qdiscs: qdiscs}, nil
}
