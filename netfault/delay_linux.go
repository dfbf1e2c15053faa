//go:build linux

package netfault

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/vishvananda/netlink"
)

// chainDelayOut holds the rules that send egress packets to the delay
// queue.
const chainDelayOut = "delay_output"

const commentDelay = "wscluster-netfault delay"

// nfqFlagBypass is NFQ_FLAG_BYPASS of xt_NFQUEUE: without a reader bound
// to the queue, the kernel accepts the packet instead of dropping it, so a
// serve process that died leaves no partition behind.
const nfqFlagBypass = 0x01

// delayChain returns the rules that send the packets leaving on dev, to
// peers only if peers is not empty, to the delay queue. With compat set,
// each rule uses the xtables NFQUEUE target through nft_compat instead of
// the nftables queue expression, for kernels built without nft_queue.
func delayChain(dev string, peers []netip.Addr, compat bool) chainRules {
	c := chainRules{chain: filterChain(chainDelayOut, nftables.ChainHookOutput), comment: commentDelay}
	if len(peers) == 0 {
		c.rules = append(c.rules, queueExprs(dev, netip.Addr{}, compat))
	}
	for _, peer := range peers {
		c.rules = append(c.rules, queueExprs(dev, peer, compat))
	}
	return c
}

// queueExprs is `oifname DEV [ip daddr PEER] queue num QueueNum bypass`.
func queueExprs(dev string, peer netip.Addr, compat bool) []expr.Any {
	name := make([]byte, ifNameSize)
	copy(name, dev)
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
	}
	if peer.IsValid() {
		exprs = append(exprs, matchAddr(peer, false)...)
	}
	if !compat {
		return append(exprs, &expr.Queue{Num: QueueNum, Total: 1, Flag: expr.QueueFlagBypass})
	}

	// struct xt_NFQ_info_v3 {u16 queuenum, queues_total, flags}, in host
	// byte order and padded to 8 bytes, as iptables-nft sends it.
	info := make(xt.Unknown, 8)
	binary.NativeEndian.PutUint16(info[0:], QueueNum)
	binary.NativeEndian.PutUint16(info[2:], 1)
	binary.NativeEndian.PutUint16(info[4:], nfqFlagBypass)
	return append(exprs, &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info})
}

// installQueueRules installs the delay rules with the nftables queue
// expression, or, where the kernel lacks it, with the xtables target.
func installQueueRules(dev string, peers []netip.Addr) error {
	err := replaceChains([]chainRules{delayChain(dev, peers, false)}, "nft_queue")
	if !kernelMissing(err) {
		return err
	}
	compatErr := replaceChains([]chainRules{delayChain(dev, peers, true)}, "xt_NFQUEUE")
	var unsupported *UnsupportedError
	if errors.As(compatErr, &unsupported) && unsupported.Missing != capNetAdmin {
		return &UnsupportedError{Missing: "nft_queue and xt_NFQUEUE", Hint: hints["xt_NFQUEUE"], Err: unsupported.Err}
	}
	return compatErr
}

// applyDelay installs the delay of d with the mechanism d names and
// returns the mechanism used, or "" when d has no delay. With no
// mechanism named, it tries netem first and falls back to NFQUEUE when
// the kernel lacks a qdisc and control names a serve process. Each
// mechanism removes the other's delay.
func applyDelay(link netlink.Link, d Degradation, control string) (string, error) {
	if d.Delay == 0 {
		return "", errors.Join(removeDelay(link), clearQueueDelay(control))
	}
	var netemErr error
	if d.DelayMechanism != DelayNFQueue {
		netemErr = installDelay(link, d.Delay, d.Jitter, d.Peers)
		if netemErr == nil {
			return DelayNetem, clearQueueDelay(control)
		}
		if d.DelayMechanism == DelayNetem || !kernelMissing(netemErr) || control == "" {
			return "", netemErr
		}
	}
	if err := removeDelay(link); err != nil {
		return "", err
	}
	err := queueDelay(d, control)
	if err == nil {
		return DelayNFQueue, nil
	}
	return "", fallbackError(netemErr, err)
}

// fallbackError combines the errors of netem and of the NFQUEUE fallback
// into one that names everything missing. netemErr is nil when the caller
// asked for NFQUEUE only. An error other than a missing kernel feature
// wraps only queueErr, so that it does not read as unsupported.
func fallbackError(netemErr, queueErr error) error {
	var netem, queue *UnsupportedError
	switch {
	case netemErr == nil || !errors.As(netemErr, &netem):
		return queueErr
	case errors.Is(queueErr, errNoServe):
		return &UnsupportedError{Missing: netem.Missing, Hint: hints["nfqueue_serve"], Err: netem.Err}
	case errors.As(queueErr, &queue) && queue.Missing == capNetAdmin:
		return queueErr
	case queue != nil:
		return &UnsupportedError{Missing: netem.Missing + " and " + queue.Missing, Hint: queue.Hint, Err: queue.Err}
	}
	return fmt.Errorf("the kernel lacks %s, and the NFQUEUE fallback failed: %w", netem.Missing, queueErr)
}

// queueDelay sends the delay of d to the serve process at control, then
// installs the rules that queue the packets of d.
func queueDelay(d Degradation, control string) error {
	if control == "" {
		return fmt.Errorf("%w: no control socket given", errNoServe)
	}
	if _, err := callControl(control, controlRequest{Op: opDelay, Delay: d.Delay, Jitter: d.Jitter}); err != nil {
		return err
	}
	if err := installQueueRules(d.device(), d.Peers); err != nil {
		return errors.Join(err, clearQueueDelay(control))
	}
	return nil
}

// clearQueueDelay sets the delay of the serve process at control to 0,
// which releases every packet it holds, then removes the delay rules.
// Removing a base chain first would make the kernel drop the held
// packets. Without a serve process there is nothing held.
func clearQueueDelay(control string) error {
	var err error
	if control != "" {
		if _, callErr := callControl(control, controlRequest{Op: opDelay}); callErr != nil && !errors.Is(callErr, errNoServe) {
			err = callErr
		}
	}
	rulesErr := replaceChains([]chainRules{{chain: filterChain(chainDelayOut, nftables.ChainHookOutput)}}, "nf_tables")
	if kernelMissing(rulesErr) {
		rulesErr = nil
	}
	return errors.Join(err, rulesErr)
}

// queueStatus returns the state of the serve process at control, or nil
// without one.
func queueStatus(control string) (*QueueStatus, error) {
	if control == "" {
		return nil, nil
	}
	st, err := callControl(control, controlRequest{Op: opStatus})
	if errors.Is(err, errNoServe) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &st, nil
}
