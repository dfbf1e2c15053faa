// Command embedded shows how an application mounts the wscluster WebSocket
// endpoint in its own http.Server, beside its own routes, and publishes from
// server-side code.
//
//	go run ./examples/embedded
//	wscluster sub --url ws://127.0.0.1:8090/ws --channel ticks
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/wscluster/wscluster/backplane"
	"github.com/wscluster/wscluster/metrics"
	"github.com/wscluster/wscluster/presence"
	"github.com/wscluster/wscluster/pubsub"
	"github.com/wscluster/wscluster/server"
)

// app is the part of an application that wires wscluster in.
type app struct {
	mux    *http.ServeMux
	pubsub *pubsub.PubSub
	ws     *server.Handler
}

// newApp builds the protocols on the single-node backplane. A clustered
// application would hand the same protocols to a cluster engine instead.
func newApp(nodeID string, log *slog.Logger) *app {
	ids := backplane.NewIDs(nodeID)
	bp := backplane.NewLocal(ids)
	m := metrics.New()

	ps := pubsub.New(pubsub.Config{Backplane: bp, Metrics: m, Logger: log})
	pr := presence.New(presence.Config{NodeID: nodeID, Backplane: bp, Metrics: m, Logger: log})
	bp.Attach(ps)
	bp.Attach(pr)

	ws := server.NewHandler(server.HandlerConfig{IDs: ids, Metrics: m, Logger: log})
	ws.Attach(ps)
	ws.Attach(pr)

	mux := http.NewServeMux()
	mux.Handle("/ws", ws)
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "the application's own route")
	})
	return &app{mux: mux, pubsub: ps, ws: ws}
}

// tick publishes the time on channel "ticks" once a second until ctx ends.
func (a *app) tick(ctx context.Context) {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			data, _ := json.Marshal(map[string]string{"time": now.Format(time.RFC3339)})
			if _, err := a.pubsub.Publish(ctx, "ticks", data, 0); err != nil {
				slog.Warn("publish failed", "err", err)
			}
		}
	}
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	a := newApp("embedded-1", log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go a.tick(ctx)

	srv := &http.Server{Addr: "127.0.0.1:8090", Handler: a.mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		_ = a.ws.Shutdown(shutdown)
	}()
	log.Info("listening", "addr", srv.Addr)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Error("server failed", "err", err)
		os.Exit(1)
	}
}
