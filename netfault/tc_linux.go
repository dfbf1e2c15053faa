//go:build linux

package netfault

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Handles of the qdiscs Degrade installs. The root is always 1:, so Heal can
// tell its own root qdisc from one someone else installed.
var (
	rootHandle   = netlink.MakeHandle(1, 0)
	delayedClass = netlink.MakeHandle(1, 4)
	netemHandle  = netlink.MakeHandle(0x40, 0)
)

// prioBands is one band more than the default priomap uses (bands 0-2), so
// only the u32 filters send packets to the last band, where netem delays
// them.
const prioBands = 4

// installDelay replaces the root qdisc of link with netem, or, when peers is
// not empty, with a prio qdisc whose last band holds netem and receives only
// packets to peers.
func installDelay(link netlink.Link, delay, jitter time.Duration, peers []netip.Addr) error {
	if err := removeDelay(link); err != nil {
		return err
	}
	index := link.Attrs().Index
	netemAttrs := netlink.NetemQdiscAttrs{Latency: uint32(delay.Microseconds()), Jitter: uint32(jitter.Microseconds())}
	if len(peers) == 0 {
		root := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: index, Handle: rootHandle, Parent: netlink.HANDLE_ROOT}, netemAttrs)
		return classify("sch_netem", netlink.QdiscAdd(root))
	}

	// Per-peer delay: prio root, netem in the extra band, one u32 filter per
	// peer that steers its packets into that band.
	prio := netlink.NewPrio(netlink.QdiscAttrs{LinkIndex: index, Handle: rootHandle, Parent: netlink.HANDLE_ROOT})
	prio.Bands = prioBands
	if err := netlink.QdiscAdd(prio); err != nil {
		return classify("sch_prio", err)
	}
	netem := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: index, Handle: netemHandle, Parent: delayedClass}, netemAttrs)
	if err := netlink.QdiscAdd(netem); err != nil {
		return errors.Join(classify("sch_netem", err), removeDelay(link))
	}
	for _, peer := range peers {
		if err := netlink.FilterAdd(peerFilter(index, peer)); err != nil {
			return errors.Join(classify("cls_u32", err), removeDelay(link))
		}
	}
	return nil
}

// peerFilter is `u32 match ip dst PEER flowid 1:4` (or ip6 dst).
func peerFilter(index int, peer netip.Addr) *netlink.U32 {
	protocol, offset := uint16(unix.ETH_P_IP), int32(16)
	if peer.Is6() {
		protocol, offset = unix.ETH_P_IPV6, 24
	}
	raw := peer.AsSlice()
	sel := &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL}
	for i := 0; i < len(raw); i += 4 {
		// The netlink package converts Val and Mask to network byte order.
		sel.Keys = append(sel.Keys, netlink.TcU32Key{
			Mask: 0xffffffff,
			Val:  binary.BigEndian.Uint32(raw[i : i+4]),
			Off:  offset + int32(i),
		})
	}
	return &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: index, Parent: rootHandle, Priority: 1, Protocol: protocol},
		ClassId:     delayedClass,
		Sel:         sel,
	}
}

// removeDelay deletes the root qdisc of link if Degrade installed it, which
// also deletes its netem child and filters.
func removeDelay(link netlink.Link) error {
	qdiscs, err := netlink.QdiscList(link)
	if err != nil {
		return classify("rtnetlink", err)
	}
	for _, q := range qdiscs {
		attrs := q.Attrs()
		if !ownRoot(q) {
			continue
		}
		if err := netlink.QdiscDel(q); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("delete %s qdisc %s on %s: %w", q.Type(), netlink.HandleStr(attrs.Handle), link.Attrs().Name, err)
		}
	}
	return nil
}

// ownRoot reports whether q is a root qdisc Degrade installed.
func ownRoot(q netlink.Qdisc) bool {
	attrs := q.Attrs()
	kind := q.Type()
	return attrs.Parent == netlink.HANDLE_ROOT && attrs.Handle == rootHandle && (kind == "netem" || kind == "prio")
}

// listQdiscs returns every qdisc on every interface in the namespace.
func listQdiscs() ([]QdiscInfo, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, classify("rtnetlink", err)
	}
	infos := []QdiscInfo{}
	for _, link := range links {
		qdiscs, err := netlink.QdiscList(link)
		if err != nil {
			return nil, fmt.Errorf("list qdiscs of %s: %w", link.Attrs().Name, err)
		}
		for _, q := range qdiscs {
			attrs := q.Attrs()
			infos = append(infos, QdiscInfo{
				Device: link.Attrs().Name,
				Kind:   q.Type(),
				Handle: netlink.HandleStr(attrs.Handle),
				Parent: netlink.HandleStr(attrs.Parent),
			})
		}
	}
	return infos, nil
}
