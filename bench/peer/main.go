// Command peer is the benchmark's peer server: a pub/sub WebSocket server
// built on the centrifuge library (github.com/centrifugal/centrifuge), the
// Go library behind Centrifugo. It lives in a module of its own so that
// wscluster's go.mod does not depend on centrifuge.
//
// Every client may connect without credentials, subscribe to any channel and
// publish to it, which matches wscluster without access control. With
// -redis-addr the nodes share centrifuge's Redis broker; without it a node
// uses the in-memory broker and runs alone.
//
//	go build -o peer . && ./peer -listen 127.0.0.1:8000 -redis-addr 127.0.0.1:6379
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/centrifugal/centrifuge"
)

// Settings shared with the wscluster nodes of the benchmark, so that both
// servers do the same work: pings every 10 s, a pong expected within 8 s,
// and a per-connection queue of 4 MiB, wscluster's --send-queue-bytes.
const (
	pingInterval   = 10 * time.Second
	pongTimeout    = 8 * time.Second
	clientQueueMax = 4 << 20
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "peer: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("peer", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8000", "HTTP address of the WebSocket endpoint /connection/websocket and of /healthz")
	redisAddr := fs.String("redis-addr", "", "host:port of the Redis server of centrifuge's Redis broker; empty uses the in-memory broker")
	name := fs.String("name", "peer", "node name")
	if err := fs.Parse(args); err != nil {
		return err
	}

	node, err := newNode(*name, *redisAddr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		// Like wscluster, which holds no write buffer per connection.
		UseWriteBufferPool: true,
		CheckOrigin:        func(*http.Request) bool { return true },
		PingPongConfig:     centrifuge.PingPongConfig{PingInterval: pingInterval, PongTimeout: pongTimeout},
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on -listen %s: %w", *listen, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
		_ = node.Shutdown(shutdownCtx)
	}()
	slog.Info("peer started", "listen", ln.Addr().String(), "redis", *redisAddr, "name", *name)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newNode returns a running centrifuge node that lets every client connect,
// subscribe and publish.
func newNode(name, redisAddr string) (*centrifuge.Node, error) {
	node, err := centrifuge.New(centrifuge.Config{
		Name:               name,
		LogLevel:           centrifuge.LogLevelError,
		LogHandler:         func(e centrifuge.LogEntry) { slog.Error(e.Message, "fields", e.Fields) },
		ClientQueueMaxSize: clientQueueMax,
	})
	if err != nil {
		return nil, err
	}
	node.OnConnecting(func(context.Context, centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: "bench"}}, nil
	})
	node.OnConnect(func(client *centrifuge.Client) {
		client.OnSubscribe(func(_ centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
		client.OnPublish(func(_ centrifuge.PublishEvent, cb centrifuge.PublishCallback) {
			cb(centrifuge.PublishReply{}, nil)
		})
	})
	if redisAddr != "" {
		if err := useRedis(node, redisAddr); err != nil {
			return nil, err
		}
	}
	if err := node.Run(); err != nil {
		return nil, fmt.Errorf("start the centrifuge node: %w", err)
	}
	return node, nil
}

func useRedis(node *centrifuge.Node, addr string) error {
	shard, err := centrifuge.NewRedisShard(node, centrifuge.RedisShardConfig{Address: addr})
	if err != nil {
		return fmt.Errorf("connect to Redis at -redis-addr %s: %w", addr, err)
	}
	broker, err := centrifuge.NewRedisBroker(node, centrifuge.RedisBrokerConfig{Shards: []*centrifuge.RedisShard{shard}})
	if err != nil {
		return fmt.Errorf("create the Redis broker: %w", err)
	}
	node.SetBroker(broker)
	return nil
}
