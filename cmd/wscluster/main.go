// Command wscluster runs a wscluster node (serve) and talks to one from a
// shell (pub, sub, members).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/server"
)

const usage = `wscluster: a clustered WebSocket pub/sub and presence server

Usage:
  wscluster serve [flags]     run a node (wscluster serve --help lists the flags)
  wscluster sub [flags]       subscribe and print notifications as JSON lines
  wscluster pub [flags]       publish a message
  wscluster members [flags]   print a channel's presence roster
  wscluster token [flags]     mint an HS256 client token for local trials
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return runServe(args[1:])
	case "pub":
		return runPub(args[1:])
	case "sub":
		return runSub(args[1:])
	case "members":
		return runMembers(args[1:])
	case "token":
		return runToken(args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(os.Stdout, usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "wscluster: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func runServe(args []string) int {
	cfg, err := config.Parse(args, os.LookupEnv)
	if errors.Is(err, config.ErrHelp) {
		fmt.Fprintln(os.Stdout, "Usage: wscluster serve [flags]")
		config.Usage(os.Stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "wscluster serve: %v\n", err)
		return 2
	}

	log := newLogger(os.Stderr, cfg)
	node, err := server.New(cfg, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "wscluster serve: %v\n", err)
		return 2
	}

	// SIGTERM and SIGINT start a graceful shutdown; Run returns once the
	// clients are closed.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := node.Run(ctx); err != nil {
		log.Error("node failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, cfg config.Node) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h)
}
