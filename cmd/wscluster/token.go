package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/wscluster/wscluster/auth"
	"github.com/wscluster/wscluster/rpc"
)

// runToken mints an HS256 token for local trials. It prints the token alone
// on stdout, so a shell can capture it: TOKEN=$(wscluster token ...).
func runToken(args []string) int {
	return mintToken(args, os.Stdout, os.Stderr, os.LookupEnv)
}

func mintToken(args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	fs := flag.NewFlagSet("wscluster token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "HS256 secret, the node's --token-hmac-secret (env WSCLUSTER_TOKEN_HMAC_SECRET)")
	sub := fs.String("sub", "", "member id the token allows joining as (required)")
	channels := fs.String("channels", "", "comma-separated channel names or prefixes ending in *; empty allows every channel")
	ttl := fs.Duration("ttl", time.Hour, "time until the token expires")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *secret == "" {
		*secret, _ = lookupEnv("WSCLUSTER_TOKEN_HMAC_SECRET")
	}

	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "wscluster token: unexpected argument %q; pass every value as a flag\n", fs.Arg(0))
		return 2
	case *secret == "":
		fmt.Fprintln(stderr, "wscluster token: missing --secret: pass the node's --token-hmac-secret or set WSCLUSTER_TOKEN_HMAC_SECRET")
		return 2
	case *ttl <= 0:
		fmt.Fprintf(stderr, "wscluster token: invalid value %s for --ttl: want a positive duration such as 1h\n", *ttl)
		return 2
	}
	if *sub == "" {
		fmt.Fprintln(stderr, "wscluster token: missing --sub: pass the member id the token allows joining as")
		return 2
	}
	if perr := rpc.CheckMember(*sub); perr != nil {
		fmt.Fprintf(stderr, "wscluster token: invalid value for --sub: %s\n", perr.Message)
		return 2
	}
	for _, pattern := range splitChannels(*channels) {
		if perr := rpc.CheckChannel(strings.TrimSuffix(pattern, "*")); perr != nil && pattern != "*" {
			fmt.Fprintf(stderr, "wscluster token: invalid value for --channels: %s\n", perr.Message)
			return 2
		}
	}

	token, err := auth.MintHS256([]byte(*secret), *sub, splitChannels(*channels), *ttl)
	if err != nil {
		fmt.Fprintf(stderr, "wscluster token: signing failed: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, token)
	return 0
}

// splitChannels returns nil for an empty list, so that the token gets no
// channels claim and allows every channel.
func splitChannels(list string) []string {
	var out []string
	for _, c := range strings.Split(list, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}
