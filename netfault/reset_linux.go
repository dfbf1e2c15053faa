//go:build linux

package netfault

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Chains of the nftables-reset mechanism, which exist only during a reset.
const (
	chainResetIn  = "reset_input"
	chainResetOut = "reset_output"
	commentReset  = "wscluster-netfault reset"
)

// TCP states of a connection that a reset aborts, as bits of the state
// mask of an inet_diag request. These are all states but LISTEN, CLOSE,
// TIME_WAIT and NEW_SYN_RECV, whose request sockets are not connections
// yet.
const (
	tcpEstablished = 1
	tcpSynSent     = 2
	tcpSynRecv     = 3
	tcpFinWait1    = 4
	tcpFinWait2    = 5
	tcpCloseWait   = 8
	tcpLastAck     = 9
	tcpClosing     = 11

	openStates = 1<<tcpEstablished | 1<<tcpSynSent | 1<<tcpSynRecv | 1<<tcpFinWait1 |
		1<<tcpFinWait2 | 1<<tcpCloseWait | 1<<tcpLastAck | 1<<tcpClosing
)

// The flags byte of the TCP header and its RST bit.
const (
	tcpFlagsOffset = 13
	tcpFlagRST     = 0x04
)

// Sizes of struct inet_diag_sockid, inet_diag_req_v2 and inet_diag_msg in
// linux/inet_diag.h.
const (
	sockIDSize   = 48
	diagReqSize  = 8 + sockIDSize
	diagMsgSize  = 4 + sockIDSize + 20
	sockIDOffset = 4
)

// tcpSocket is one TCP socket as sock_diag dumps it. id is its
// inet_diag_sockid (ports, addresses, interface and cookie), which
// SOCK_DESTROY takes back to name exactly this socket.
type tcpSocket struct {
	family uint8
	id     [sockIDSize]byte
	remote netip.Addr
}

// ResetConnections makes every open TCP connection with peers fail, with
// the mechanism opts selects. New connections go through afterwards.
func ResetConnections(peers []netip.Addr, opts ResetOptions) (ResetResult, error) {
	if err := opts.Validate(); err != nil {
		return ResetResult{}, err
	}
	if len(peers) == 0 {
		return ResetResult{}, fmt.Errorf("%w: reset needs at least one peer address", ErrInvalid)
	}
	for _, p := range peers {
		if err := checkAddr(p); err != nil {
			return ResetResult{}, err
		}
	}
	conn, err := netlink.Dial(unix.NETLINK_INET_DIAG, nil)
	if err != nil {
		return ResetResult{}, classify("inet_diag", err)
	}
	defer conn.Close()
	sockets, err := peerSockets(conn, peers)
	if err != nil {
		return ResetResult{}, err
	}
	result := ResetResult{Mechanism: ResetSockDestroy, Connections: len(sockets)}

	if opts.Mechanism != ResetNFTables {
		err = destroySockets(conn, sockets)
		if err == nil || opts.Mechanism == ResetSockDestroy || !kernelMissing(err) {
			return result, err
		}
	}
	result.Mechanism = ResetNFTables
	return result, rejectFor(peers, opts.hold())
}

// peerSockets dumps the open TCP sockets of both families and returns
// those whose remote address is one of peers. IPv4 peers also match
// IPv4-mapped remotes of IPv6 sockets.
func peerSockets(conn *netlink.Conn, peers []netip.Addr) ([]tcpSocket, error) {
	want := make(map[netip.Addr]bool, len(peers))
	for _, p := range peers {
		want[p] = true
	}
	var out []tcpSocket
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		var id [sockIDSize]byte
		msgs, err := conn.Execute(diagMessage(unix.SOCK_DIAG_BY_FAMILY, netlink.Dump, family, id))
		err = classify("inet_diag", err)
		if family == unix.AF_INET6 && kernelMissing(err) {
			// A kernel without IPv6 has no IPv6 sockets to reset.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dump the TCP sockets of address family %d: %w", family, err)
		}
		for _, m := range msgs {
			s, ok := parseDiagMsg(m.Data)
			if ok && want[s.remote] {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// diagMessage builds an inet_diag_req_v2 for TCP sockets in openStates.
func diagMessage(msgType uint16, flags netlink.HeaderFlags, family uint8, id [sockIDSize]byte) netlink.Message {
	req := make([]byte, diagReqSize)
	req[0], req[1] = family, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(req[4:], openStates)
	copy(req[8:], id[:])
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(msgType), Flags: netlink.Request | flags},
		Data:   req,
	}
}

// parseDiagMsg reads an inet_diag_msg. The remote address is at offset 20
// of the socket id, in network byte order, 4 or 16 bytes long.
func parseDiagMsg(b []byte) (tcpSocket, bool) {
	if len(b) < diagMsgSize {
		return tcpSocket{}, false
	}
	s := tcpSocket{family: b[0]}
	copy(s.id[:], b[sockIDOffset:sockIDOffset+sockIDSize])
	dst := s.id[20:36]
	switch s.family {
	case unix.AF_INET:
		s.remote = netip.AddrFrom4([4]byte(dst[:4]))
	case unix.AF_INET6:
		s.remote = netip.AddrFrom16([16]byte(dst)).Unmap()
	default:
		return tcpSocket{}, false
	}
	return s, true
}

// destroySockets aborts each socket with SOCK_DESTROY. A socket that
// closed since the dump is skipped.
func destroySockets(conn *netlink.Conn, sockets []tcpSocket) error {
	for _, s := range sockets {
		_, err := conn.Execute(diagMessage(unix.SOCK_DESTROY, netlink.Acknowledge, s.family, s.id))
		if err != nil && !errors.Is(err, syscall.ENOENT) {
			return classify("sock_destroy", fmt.Errorf("destroy the TCP socket to %v: %w", s.remote, err))
		}
	}
	return nil
}

// rejectFor rejects every TCP packet from and to peers with a RST for
// hold, then removes the rules. A RST sent on output reaches the local
// socket, so a connection fails at whichever end sends during the hold.
// The other end gets a RST for its next packet, from the rules or, after
// the hold, from the kernel, which no longer has the socket.
func rejectFor(peers []netip.Addr, hold time.Duration) error {
	in := chainRules{chain: filterChain(chainResetIn, nftables.ChainHookInput), comment: commentReset}
	out := chainRules{chain: filterChain(chainResetOut, nftables.ChainHookOutput), comment: commentReset}
	for _, p := range peers {
		in.rules = append(in.rules, rejectExprs(p, true))
		out.rules = append(out.rules, rejectExprs(p, false))
	}
	if err := replaceChains([]chainRules{in, out}, "nft_reject"); err != nil {
		return err
	}
	time.Sleep(hold)
	in.rules, out.rules = nil, nil
	return replaceChains([]chainRules{in, out}, "nf_tables")
}

// rejectExprs is `ip saddr PEER meta l4proto tcp tcp flags & rst == 0
// reject with tcp reset`, or daddr for the output chain. The RST that the
// output rule sends to the local socket has the peer's source address, so
// the input rule must let RSTs pass, or it would drop that one too.
func rejectExprs(peer netip.Addr, src bool) []expr.Any {
	exprs := matchAddr(peer, src)
	return append(exprs,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: tcpFlagsOffset, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpFlagRST}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
	)
}
