//go:build wscluster_broken_lossy

package core

// brokenDropEvery is set only in the suite's deliberately broken test
// build: it drops every brokenDropEvery-th publish from a peer, which proves
// that the suite catches lost messages outside fault windows.
const brokenDropEvery = 10
