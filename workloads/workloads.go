// Package workloads drives client traffic at a cluster and records every
// operation and everything the clients receive in the history. The pubsub
// workload publishes from every node to subscribers on every node, the
// presence workload churns presence rosters, and mixed runs both.
package workloads

import (
	"context"
)

// Workload is one traffic pattern. The suite calls Setup, then Run for the
// main phase, Observe during the final recovery wait, Final for the final
// reads, and Close.
type Workload interface {
	// Setup connects the clients, and subscribes and joins what the
	// workload watches for the whole run.
	Setup(ctx context.Context) error
	// Run issues operations until ctx ends. A client whose node dies
	// records info for the operation in flight and reconnects to another
	// node, like a client behind a load balancer.
	Run(ctx context.Context) error
	// Observe issues no writes. Clients keep recording what they receive
	// and the workload reads rosters periodically, until ctx ends.
	Observe(ctx context.Context) error
	// Final reads the state of every node with fresh connections.
	Final(ctx context.Context) error
	// Close closes every client. It is safe to call twice.
	Close() error
	// Completed is the number of operations completed so far, for the
	// progress line.
	Completed() int64
}
