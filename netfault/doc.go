// Package netfault injects network faults into the Linux network namespace
// it runs in. Partitions and ingress packet loss use nftables. Egress
// delay uses a netem qdisc, or an NFQUEUE that a serve process reads. TCP
// connection resets use sock_diag or nftables reject rules. The
// wscluster-netfault command wraps it for a sidecar container
// that shares a wscluster node's network namespace (docker run --network
// container:NODE --cap-add NET_ADMIN --user 0).
//
// Every nftables rule lives in the table "inet wscluster", so Heal removes
// all of them by deleting that one table. The package only touches root
// qdiscs with the handle 1: that it installed itself.
//
// Kernels without nf_tables, sch_netem or the NFQUEUE parts, and
// namespaces without CAP_NET_ADMIN, make the functions return an
// *UnsupportedError, which matches ErrUnsupported, so a caller can fall
// back to another mechanism.
package netfault
