// Command multinode starts a two-node mesh cluster inside one process, on
// loopback ports, and shows a message and a presence join crossing from one
// node to the other:
//
//	go run ./examples/multinode
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/wscluster/wscluster/client"
	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/server"
)

// clusterNode is one running node and its URLs.
type clusterNode struct {
	node   *server.Node
	wsURL  string
	cancel context.CancelFunc
	done   chan error
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startNode starts node id with its cluster listener on clusterAddr,
// dialing peers.
func startNode(id, clusterAddr string, peers []string, log *slog.Logger) (*clusterNode, error) {
	cfg := config.Default()
	cfg.NodeID = id
	cfg.Engine = "mesh"
	cfg.ClusterListen = clusterAddr
	cfg.ClusterAdvertise = clusterAddr
	cfg.Peers = peers
	cfg.ClusterSecret = "example-secret"
	node, err := server.New(cfg, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &clusterNode{node: node, wsURL: "ws://" + ln.Addr().String() + "/ws", cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- node.Serve(ctx, ln) }()
	return n, nil
}

func (n *clusterNode) stop() {
	n.cancel()
	<-n.done
}

// run starts two nodes, subscribes on the second, joins presence on both,
// publishes on the first and writes what the subscriber saw to out.
func run(ctx context.Context, out io.Writer, log *slog.Logger) error {
	addr1, err := freeAddr()
	if err != nil {
		return err
	}
	addr2, err := freeAddr()
	if err != nil {
		return err
	}
	n1, err := startNode("n1", addr1, []string{addr2}, log)
	if err != nil {
		return err
	}
	defer n1.stop()
	n2, err := startNode("n2", addr2, []string{addr1}, log)
	if err != nil {
		return err
	}
	defer n2.stop()

	// Wait until the nodes hear each other, as a load balancer's /readyz
	// probe would.
	for n1.node.Status().ConnectedPeers == 0 || n2.node.Status().ConnectedPeers == 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the nodes did not connect: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	fmt.Fprintln(out, "cluster ready: n1 and n2 are connected")

	sub, err := client.Dial(ctx, n2.wsURL, client.Options{})
	if err != nil {
		return err
	}
	defer sub.Close()
	if err := sub.Subscribe(ctx, "news"); err != nil {
		return err
	}
	if _, err := sub.Join(ctx, "news", "alice", nil); err != nil {
		return err
	}

	pub, err := client.Dial(ctx, n1.wsURL, client.Options{})
	if err != nil {
		return err
	}
	defer pub.Close()
	if _, err := pub.Join(ctx, "news", "bob", map[string]string{"role": "publisher"}); err != nil {
		return err
	}
	if _, err := pub.Publish(ctx, "news", map[string]string{"headline": "hello from n1"}, 1); err != nil {
		return err
	}

	// The subscriber on n2 sees bob join on n1, then the message.
	for seen := 0; seen < 2; {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the subscriber on n2 did not receive both notifications: %w", ctx.Err())
		case note := <-sub.Notifications():
			switch {
			case note.Presence != nil:
				fmt.Fprintf(out, "n2 got %s: %s on node %s\n", note.Method, note.Presence.Member, note.Presence.Node)
				seen++
			case note.Message != nil:
				fmt.Fprintf(out, "n2 got message on %s: %s\n", note.Message.Channel, note.Message.Data)
				seen++
			}
		}
	}
	return nil
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout, log); err != nil {
		fmt.Fprintln(os.Stderr, "multinode:", err)
		os.Exit(1)
	}
}
