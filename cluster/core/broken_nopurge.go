//go:build wscluster_broken_nopurge

package core

// brokenNoPurge is set only in the suite's deliberately broken test build,
// which proves that the suite catches members left behind by a dead node.
const brokenNoPurge = true
