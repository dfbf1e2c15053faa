//go:build linux

package netfault

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Message types, attributes and values of the nfnetlink_queue protocol,
// from linux/netfilter/nfnetlink_queue.h, which golang.org/x/sys/unix does
// not define.
const (
	nfqnlMsgPacket       = 0
	nfqnlMsgVerdictBatch = 3
	nfqnlMsgConfig       = 2

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2

	nfqaCfgCmd      = 1
	nfqaCfgParams   = 2
	nfqaCfgQueueLen = 3
	nfqaCfgMask     = 4
	nfqaCfgFlags    = 5

	nfqnlCfgCmdBind = 1
	nfqnlCopyMeta   = 1
	// nfqaCfgFGSO lets the kernel queue GSO packets whole instead of
	// segmenting them first. The reader never looks at the payload.
	nfqaCfgFGSO = 4

	nfAccept = 1
)

// queueMaxLen is how many packets the kernel holds for the reader; more
// are dropped, as a full netem queue (1000 packets by default) drops.
const queueMaxLen = 8192

// queueReadBuffer is the receive buffer of the queue socket. Each packet
// message carries no payload, so it holds many thousands of them.
const queueReadBuffer = 4 << 20

// nfqueueConn is a netlink socket bound to one NFQUEUE number. It receives
// the ids of queued packets and sends verdicts for them.
type nfqueueConn struct {
	conn *netlink.Conn
	num  uint16
}

// bindQueue opens a netlink socket and binds it to queue num, asking for
// packet metadata without payload.
func bindQueue(num uint16) (*nfqueueConn, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, classify("nfnetlink", err)
	}
	_ = conn.SetReadBuffer(queueReadBuffer)

	// One request binds the queue and sets the copy mode, the length and
	// the GSO flag; the kernel applies the command first.
	params := binary.BigEndian.AppendUint32(nil, 0)
	params = append(params, nfqnlCopyMeta)
	attrs := []netlink.Attribute{
		{Type: nfqaCfgCmd, Data: []byte{nfqnlCfgCmdBind, 0, 0, unix.AF_UNSPEC}},
		{Type: nfqaCfgParams, Data: params},
		{Type: nfqaCfgQueueLen, Data: binary.BigEndian.AppendUint32(nil, queueMaxLen)},
		{Type: nfqaCfgFlags, Data: binary.BigEndian.AppendUint32(nil, nfqaCfgFGSO)},
		{Type: nfqaCfgMask, Data: binary.BigEndian.AppendUint32(nil, nfqaCfgFGSO)},
	}
	q := &nfqueueConn{conn: conn, num: num}
	msg, err := q.message(nfqnlMsgConfig, attrs)
	if err == nil {
		msg.Header.Flags |= netlink.Acknowledge
		_, err = conn.Execute(msg)
	}
	if err != nil {
		conn.Close()
		if errors.Is(err, syscall.EBUSY) {
			return nil, fmt.Errorf("bind NFQUEUE %d: another process in this network namespace has bound it: stop the other wscluster-netfault serve: %w", num, err)
		}
		return nil, classify("nfnetlink_queue", err)
	}
	return q, nil
}

// message builds an nfnetlink message of the queue subsystem for the
// queue: the nfgenmsg header (family, version, queue number in network
// byte order) followed by attrs.
func (q *nfqueueConn) message(msgType uint16, attrs []netlink.Attribute) (netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return netlink.Message{}, err
	}
	header := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}
	binary.BigEndian.PutUint16(header[2:], q.num)
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_QUEUE<<8 | msgType), Flags: netlink.Request},
		Data:   append(header, data...),
	}, nil
}

// receive blocks until the kernel sends packets and returns their ids, in
// the order the kernel queued them.
func (q *nfqueueConn) receive() ([]uint32, error) {
	msgs, err := q.conn.Receive()
	if err != nil {
		return nil, err
	}
	ids := make([]uint32, 0, len(msgs))
	for _, m := range msgs {
		if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_QUEUE<<8|nfqnlMsgPacket) || len(m.Data) < 4 {
			continue
		}
		id, ok := packetID(m.Data[4:])
		if ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// packetID returns the id in the NFQA_PACKET_HDR attribute, whose first
// four bytes are the id in network byte order.
func packetID(attrs []byte) (uint32, bool) {
	ad, err := netlink.NewAttributeDecoder(attrs)
	if err != nil {
		return 0, false
	}
	for ad.Next() {
		if ad.Type() == nfqaPacketHdr {
			if b := ad.Bytes(); len(b) >= 4 {
				return binary.BigEndian.Uint32(b), true
			}
		}
	}
	return 0, false
}

// acceptUpTo accepts every packet of the queue whose id is at most id. The
// kernel numbers the packets of a queue in the order it queued them.
func (q *nfqueueConn) acceptUpTo(id uint32) error {
	verdict := binary.BigEndian.AppendUint32(nil, nfAccept)
	verdict = binary.BigEndian.AppendUint32(verdict, id)
	msg, err := q.message(nfqnlMsgVerdictBatch, []netlink.Attribute{{Type: nfqaVerdictHdr, Data: verdict}})
	if err != nil {
		return err
	}
	_, err = q.conn.Send(msg)
	return err
}

// close closes the socket. The kernel then drops the packets it still
// holds for it and, with the bypass flag of the rules, accepts new ones.
func (q *nfqueueConn) close() error { return q.conn.Close() }
