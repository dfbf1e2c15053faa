//go:build !wscluster_broken_lossy

package core

// brokenDropEvery is 0 (off) in every real build. See broken_lossy.go.
const brokenDropEvery = 0
