//go:build !wscluster_broken_nopurge

package core

// brokenNoPurge is false in every real build. See broken_nopurge.go.
const brokenNoPurge = false
