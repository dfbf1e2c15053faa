package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wscluster/wscluster/bench"
	"github.com/wscluster/wscluster/report"
	"github.com/wscluster/wscluster/suite"
)

func checkCommand(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: wscluster-suite check RUN_DIR\n\nChecks the history.jsonl of an earlier run again and rewrites its results.json and report.html.")
	}
	if err := fs.Parse(args); err != nil {
		return exitNotRun
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitNotRun
	}
	res, err := suite.Check(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "wscluster-suite check: %v\n", err)
		return exitNotRun
	}
	return printVerdict(fs.Arg(0), res)
}

func serveCommand(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "HTTP address to serve the run browser on")
	dir := fs.String("results", "results", "folder of the run folders")
	if err := fs.Parse(args); err != nil {
		return exitNotRun
	}
	if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
		fmt.Fprintf(os.Stderr, "wscluster-suite serve: --results %q is not a folder; run a scenario first or point --results at one\n", *dir)
		return exitNotRun
	}
	fmt.Printf("browsing %s at http://%s/\n", *dir, *addr)
	srv := &http.Server{Addr: *addr, Handler: report.Handler(*dir), ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "wscluster-suite serve: %v\n", err)
		return exitNotRun
	}
	return exitValid
}

// benchCommand measures our engines against the centrifuge peer. Missed
// targets are printed in the table, not turned into an exit status, because
// the machine's noise decides them as much as the code does.
func benchCommand(args []string) int {
	var cfg bench.Config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return exitNotRun
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench.Run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "wscluster-suite bench: %v\n", err)
		return exitNotRun
	}
	return exitValid
}
