// Command wscluster-suite tests a wscluster deployment the way Jepsen tests
// a database: it runs a workload against a real multi-node cluster while a
// nemesis injects faults, then checks the recorded history against the
// server's guarantees and writes an HTML report.
//
//	wscluster-suite run [flags]      one run; exit 0 valid, 1 invalid, 2 unknown, 3 not run
//	wscluster-suite check RUN_DIR    check a recorded history again
//	wscluster-suite serve [flags]    browse every run in the results folder
package main

import (
	"fmt"
	"os"
)

// Exit statuses of the run and check commands.
const (
	exitValid   = 0
	exitInvalid = 1
	exitUnknown = 2
	exitNotRun  = 3
)

const usage = `usage: wscluster-suite <command> [flags]

commands:
  run     start a cluster, drive a workload under faults, check and report
  check   check the history of an earlier run again and rewrite its report
  serve   browse every run in the results folder over HTTP
  bench   measure throughput, latency and memory against the centrifuge peer

Run "wscluster-suite <command> -h" for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(exitNotRun)
	}
	args := os.Args[2:]
	var code int
	switch os.Args[1] {
	case "run":
		code = runCommand(args)
	case "check":
		code = checkCommand(args)
	case "serve":
		code = serveCommand(args)
	case "bench":
		code = benchCommand(args)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "wscluster-suite: unknown command %q\n\n%s", os.Args[1], usage)
		code = exitNotRun
	}
	os.Exit(code)
}
