//go:build linux

package netfault

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Chain names in the table. Partitions and loss get separate base chains, so
// Partition and Degrade each replace their own rules and keep the other's.
const (
	chainPartitionIn  = "input"
	chainPartitionOut = "output"
	chainLossIn       = "loss_input"
)

// Comments stored with each rule, visible in "nft list ruleset".
const (
	commentPartition = "wscluster-netfault partition"
	commentLoss      = "wscluster-netfault loss"
)

var nftTable = &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}

// chainRules is the full rule list one chain gets; no rules deletes the chain.
type chainRules struct {
	chain   *nftables.Chain
	comment string
	rules   [][]expr.Any
}

func filterChain(name string, hook *nftables.ChainHook) *nftables.Chain {
	policy := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name:     name,
		Table:    nftTable,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  hook,
		Priority: nftables.ChainPriorityFilter,
		Policy:   &policy,
	}
}

// partitionChains returns the rules that drop every packet from and to addrs.
func partitionChains(addrs []netip.Addr) []chainRules {
	in := chainRules{chain: filterChain(chainPartitionIn, nftables.ChainHookInput), comment: commentPartition}
	out := chainRules{chain: filterChain(chainPartitionOut, nftables.ChainHookOutput), comment: commentPartition}
	for _, addr := range addrs {
		in.rules = append(in.rules, append(matchAddr(addr, true), &expr.Verdict{Kind: expr.VerdictDrop}))
		out.rules = append(out.rules, append(matchAddr(addr, false), &expr.Verdict{Kind: expr.VerdictDrop}))
	}
	return []chainRules{in, out}
}

// lossChain returns the rules that drop permille/1000 of the packets arriving
// on dev, from peers only if peers is not empty.
func lossChain(dev string, peers []netip.Addr, permille uint32) chainRules {
	c := chainRules{chain: filterChain(chainLossIn, nftables.ChainHookInput), comment: commentLoss}
	if permille == 0 {
		return c
	}
	if len(peers) == 0 {
		c.rules = append(c.rules, lossExprs(dev, netip.Addr{}, permille))
	}
	for _, peer := range peers {
		c.rules = append(c.rules, lossExprs(dev, peer, permille))
	}
	return c
}

// matchAddr matches the source (src) or destination address of IPv4 or IPv6
// packets: "ip saddr A" or "ip6 daddr A" in nft syntax.
func matchAddr(addr netip.Addr, src bool) []expr.Any {
	proto, offset := byte(unix.NFPROTO_IPV4), uint32(16)
	if src {
		offset = 12
	}
	if addr.Is6() {
		proto, offset = unix.NFPROTO_IPV6, 24
		if src {
			offset = 8
		}
	}
	raw := addr.AsSlice()
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(len(raw))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: raw},
	}
}

// lossExprs is `iifname DEV [ip saddr PEER] numgen random mod 1000 < N drop`.
// numgen stores the number in host byte order while cmp compares bytes
// (big-endian order) for "<", so a byteorder step converts it first, as
// the nft tool does.
func lossExprs(dev string, peer netip.Addr, permille uint32) []expr.Any {
	name := make([]byte, ifNameSize)
	copy(name, dev)
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
	}
	if peer.IsValid() {
		exprs = append(exprs, matchAddr(peer, true)...)
	}
	threshold := binary.BigEndian.AppendUint32(nil, permille)
	return append(exprs,
		&expr.Numgen{Register: 1, Modulus: 1000, Type: unix.NFT_NG_RANDOM},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: threshold},
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
}

// tableChains returns the names of the chains in the table; an empty map
// means the table does not exist.
func tableChains(conn *nftables.Conn) (map[string]bool, error) {
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, classify("nf_tables", err)
	}
	names := make(map[string]bool)
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == TableName {
			names[c.Name] = true
		}
	}
	return names, nil
}

// tableExists reports whether the table exists, even with no chains.
func tableExists(conn *nftables.Conn) (bool, error) {
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, classify("nf_tables", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			return true, nil
		}
	}
	return false, nil
}

// replaceChains gives each chain in set exactly its rules, in one nftables
// transaction, so no packet meets a half-applied rule set. Chains not in set
// keep their rules. When no chain remains, it deletes the table. feature
// names what a kernel that rejects the batch lacks.
func replaceChains(set []chainRules, feature string) error {
	conn, err := nftables.New()
	if err != nil {
		return classify("nf_tables", err)
	}
	existing, err := tableChains(conn)
	if err != nil {
		// A kernel without nftables has no rules to remove.
		if kernelMissing(err) && !anyRules(set) {
			return nil
		}
		return err
	}

	// Count the chains left afterwards: those outside set plus those of set
	// that get rules.
	remaining := 0
	for name := range existing {
		if !inSet(set, name) {
			remaining++
		}
	}
	for _, cr := range set {
		if len(cr.rules) > 0 {
			remaining++
		}
	}
	if remaining == 0 {
		return deleteTable(conn)
	}

	// Build the batch: flush each existing chain, delete the chains that get
	// no rules and fill the others.
	conn.AddTable(nftTable)
	for _, cr := range set {
		addChainRules(conn, cr, existing[cr.chain.Name])
	}
	if err := conn.Flush(); err != nil {
		return classify(feature, err)
	}
	return nil
}

func addChainRules(conn *nftables.Conn, cr chainRules, exists bool) {
	if exists {
		conn.FlushChain(cr.chain)
	}
	if len(cr.rules) == 0 {
		if exists {
			conn.DelChain(cr.chain)
		}
		return
	}
	chain := conn.AddChain(cr.chain)
	comment := userdata.AppendString(nil, userdata.TypeComment, cr.comment)
	for _, exprs := range cr.rules {
		conn.AddRule(&nftables.Rule{Table: nftTable, Chain: chain, Exprs: exprs, UserData: comment})
	}
}

func anyRules(set []chainRules) bool {
	for _, cr := range set {
		if len(cr.rules) > 0 {
			return true
		}
	}
	return false
}

func inSet(set []chainRules, name string) bool {
	for _, cr := range set {
		if cr.chain.Name == name {
			return true
		}
	}
	return false
}

// deleteTable deletes the table with every chain and rule in it; a missing
// table is not an error.
func deleteTable(conn *nftables.Conn) error {
	exists, err := tableExists(conn)
	if err != nil || !exists {
		return err
	}
	conn.DelTable(nftTable)
	if err := conn.Flush(); err != nil {
		return classify("nf_tables", err)
	}
	return nil
}

// countRules returns the number of rules in the table, 0 when it is missing.
func countRules() (int, error) {
	conn, err := nftables.New()
	if err != nil {
		return 0, classify("nf_tables", err)
	}
	chains, err := tableChains(conn)
	if err != nil {
		return 0, err
	}
	n := 0
	for name := range chains {
		rules, err := conn.GetRules(nftTable, &nftables.Chain{Name: name, Table: nftTable})
		if err != nil {
			return 0, fmt.Errorf("list rules of chain %q in table inet %s: %w", name, TableName, err)
		}
		n += len(rules)
	}
	return n, nil
}

// kernelMissing reports whether err reports a kernel that lacks a feature, as
// opposed to a missing capability.
func kernelMissing(err error) bool {
	var unsupported *UnsupportedError
	return errors.As(err, &unsupported) && unsupported.Missing != capNetAdmin
}

// healRules deletes the table, if it exists.
func healRules() error {
	conn, err := nftables.New()
	if err != nil {
		return classify("nf_tables", err)
	}
	return deleteTable(conn)
}
