package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wscluster/wscluster/client"
)

// defaultClientURL is the /ws endpoint of a node started with the default
// --listen on this host.
const defaultClientURL = "ws://127.0.0.1:8080/ws"

// Exit statuses of the client commands. The names carry a prefix because
// other files of package main define the server's commands.
const (
	clientExitOK       = 0
	clientExitFailure  = 1
	clientExitBadFlags = 2
)

// errBadClientFlag marks a flag value that a client command rejects before
// it connects.
var errBadClientFlag = errors.New("invalid flag")

// runPub runs "wscluster pub" and returns its exit status.
func runPub(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	return pubCommand(ctx, args, os.Stdout, os.Stderr)
}

// runSub runs "wscluster sub" and returns its exit status.
func runSub(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	return subCommand(ctx, args, os.Stdout, os.Stderr)
}

// runMembers runs "wscluster members" and returns its exit status.
func runMembers(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	return membersCommand(ctx, args, os.Stdout, os.Stderr)
}

// clientCmd holds the flags and outputs that pub, sub and members share.
// Its helpers are methods so that their names cannot collide with the rest
// of package main.
type clientCmd struct {
	name   string // "pub", "sub" or "members"
	stdout io.Writer
	stderr io.Writer
	flags  *flag.FlagSet

	url     string
	token   string
	timeout time.Duration
}

// newClientCmd returns a command with the shared flags registered.
func newClientCmd(name, usage string, stdout, stderr io.Writer) *clientCmd {
	cmd := &clientCmd{name: name, stdout: stdout, stderr: stderr}
	cmd.flags = flag.NewFlagSet(name, flag.ContinueOnError)
	cmd.flags.SetOutput(stderr)
	cmd.flags.Usage = func() {
		fmt.Fprintf(stderr, "usage: wscluster %s %s\n\nflags:\n", name, usage)
		cmd.flags.PrintDefaults()
	}

	defaultURL := defaultClientURL
	if env := os.Getenv("WSCLUSTER_URL"); env != "" {
		defaultURL = env
	}
	cmd.flags.StringVar(&cmd.url, "url", defaultURL, "WebSocket URL of a node's /ws endpoint (env WSCLUSTER_URL)")
	cmd.flags.StringVar(&cmd.token, "token", "", `JWT to send as "Authorization: Bearer" (env WSCLUSTER_TOKEN)`)
	cmd.flags.DurationVar(&cmd.timeout, "timeout", 5*time.Second, "time limit for connecting and for each request")

	return cmd
}

// parse parses args and validates the shared flags. It returns done with
// the exit status when the command must stop, because of -h or a bad flag.
func (cmd *clientCmd) parse(args []string) (status int, done bool) {
	err := cmd.flags.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return clientExitOK, true
	}
	if err != nil {
		// The flag package has already printed the error and the usage.
		return clientExitBadFlags, true
	}

	// The token is read from the environment only here, so that the help
	// output never shows it as a default value.
	if cmd.token == "" {
		cmd.token = os.Getenv("WSCLUSTER_TOKEN")
	}

	switch {
	case cmd.flags.NArg() > 0:
		return cmd.badFlag("unexpected argument %q; every value needs a flag, such as --channel NAME", cmd.flags.Arg(0)), true
	case cmd.url == "":
		return cmd.badFlag("--url is empty; pass the node's WebSocket URL, such as %s", defaultClientURL), true
	case cmd.timeout <= 0:
		return cmd.badFlag("--timeout %s must be positive, such as 5s", cmd.timeout), true
	}

	return clientExitOK, false
}

// badFlag prints a flag error and returns the exit status for it.
func (cmd *clientCmd) badFlag(format string, args ...any) int {
	fmt.Fprintf(cmd.stderr, "wscluster %s: %v: %s\n", cmd.name, errBadClientFlag, fmt.Sprintf(format, args...))

	return clientExitBadFlags
}

// fail prints a runtime error and returns the exit status for it.
func (cmd *clientCmd) fail(format string, args ...any) int {
	fmt.Fprintf(cmd.stderr, "wscluster %s: %s\n", cmd.name, fmt.Sprintf(format, args...))

	return clientExitFailure
}

// connect dials the node. On failure it prints what went wrong and how to
// fix it, and returns nil.
func (cmd *clientCmd) connect(ctx context.Context, opts client.Options) *client.Client {
	opts.Token = cmd.token
	opts.DialTimeout = cmd.timeout

	c, err := client.Dial(ctx, cmd.url, opts)
	if err != nil {
		cmd.fail("cannot connect to %s: %s", cmd.url, cmd.describeDialError(err))
		return nil
	}

	return c
}

// describeDialError names the cause of a failed dial and the next step.
func (cmd *clientCmd) describeDialError(err error) string {
	var handshake *client.HandshakeError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused; is a node running? start one with: bin/wscluster serve"
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("timed out after %s; check --url, or raise --timeout", cmd.timeout)
	case errors.As(err, &handshake) && (handshake.StatusCode == 401 || handshake.StatusCode == 403):
		return fmt.Sprintf("HTTP %s: %s; pass a valid token with --token or WSCLUSTER_TOKEN", handshake.Status, handshake.Reason)
	case errors.As(err, &handshake):
		return fmt.Sprintf("HTTP %s: %s; check that --url points to a node's /ws endpoint", handshake.Status, handshake.Reason)
	default:
		return fmt.Sprintf("%v; check --url", err)
	}
}

// describeRequestError explains a failed request and, where one helps, the
// next step.
func (cmd *clientCmd) describeRequestError(err error) string {
	var rpcErr *client.RPCError
	switch {
	case errors.As(err, &rpcErr):
		return rpcErr.Error() + rpcErrorHint(rpcErr.Code)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no response within %s; check the node's log, or raise --timeout", cmd.timeout)
	case errors.Is(err, client.ErrDisconnected):
		return fmt.Sprintf("%v; the connection dropped, check the node's log and retry", err)
	default:
		return err.Error()
	}
}

// rpcErrorHint returns advice for the wscluster application error codes.
func rpcErrorHint(code int) string {
	switch code {
	case client.CodeInvalidChannel:
		return "; a channel name is 1-255 bytes of UTF-8 without control characters"
	case client.CodeInvalidMember:
		return "; a member id is 1-128 bytes of UTF-8 without control characters, and --info a JSON object of at most 1024 bytes"
	case client.CodeBackplaneUnavailable:
		return "; nothing was delivered, retry when the node's /readyz returns 200"
	case client.CodeNotAuthorized:
		return "; the token does not allow this channel or member id"
	default:
		return ""
	}
}

// requestContext returns the context for one request, bounded by --timeout.
func (cmd *clientCmd) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, cmd.timeout)
}

// writeJSONLine writes v to stdout as compact JSON and a newline.
func (cmd *clientCmd) writeJSONLine(v any) error {
	line, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode JSON line: %w", err)
	}
	if _, err := cmd.stdout.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write to stdout: %w", err)
	}

	return nil
}

// pubFlags are the flags of pub.
type pubFlags struct {
	channel  string
	data     string
	qos      int
	count    int
	interval time.Duration
}

// pubCommand implements "wscluster pub": it publishes the same data --count
// times and prints each msg_id on its own line.
func pubCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newClientCmd("pub", "--channel C --data JSON [--qos 0|1] [--count N] [--interval D] [flags]", stdout, stderr)
	var pub pubFlags
	cmd.flags.StringVar(&pub.channel, "channel", "", "channel to publish to (required)")
	cmd.flags.StringVar(&pub.data, "data", "", `message data as JSON, such as '"hello"' or '{"n":1}' (required)`)
	cmd.flags.IntVar(&pub.qos, "qos", 0, "delivery guarantee: 0 at most once, 1 redelivered until acked")
	cmd.flags.IntVar(&pub.count, "count", 1, "number of times to publish the same data")
	cmd.flags.DurationVar(&pub.interval, "interval", 0, "pause between two publishes, such as 100ms")
	if status, done := cmd.parse(args); done {
		return status
	}
	if status, ok := cmd.validatePub(pub); !ok {
		return status
	}

	c := cmd.connect(ctx, client.Options{})
	if c == nil {
		return clientExitFailure
	}
	defer c.Close()

	return cmd.publishRepeatedly(ctx, c, pub)
}

// validatePub checks the flags of pub that must be right before anything is
// sent. The server checks the channel name itself.
func (cmd *clientCmd) validatePub(pub pubFlags) (int, bool) {
	switch {
	case pub.channel == "":
		return cmd.badFlag("--channel is missing; name the channel to publish to"), false
	case pub.data == "":
		return cmd.badFlag(`--data is missing; pass the message as JSON, such as --data '"hello"'`), false
	case !json.Valid([]byte(pub.data)):
		quoted, _ := json.Marshal(pub.data)
		return cmd.badFlag("--data %s is not valid JSON; to send it as a string, quote it: --data '%s'", pub.data, quoted), false
	case pub.qos != 0 && pub.qos != 1:
		return cmd.badFlag("--qos %d is not allowed; use 0 or 1", pub.qos), false
	case pub.count < 1:
		return cmd.badFlag("--count %d must be at least 1", pub.count), false
	case pub.interval < 0:
		return cmd.badFlag("--interval %s must not be negative", pub.interval), false
	}

	return clientExitOK, true
}

// publishRepeatedly publishes the data pub.count times and prints each
// msg_id.
func (cmd *clientCmd) publishRepeatedly(ctx context.Context, c *client.Client, pub pubFlags) int {
	for i := range pub.count {
		if i > 0 && !sleepUntilDone(ctx, pub.interval) {
			return cmd.fail("interrupted after %d of %d publishes", i, pub.count)
		}

		reqCtx, cancel := cmd.requestContext(ctx)
		msgID, err := c.Publish(reqCtx, pub.channel, json.RawMessage(pub.data), pub.qos)
		cancel()
		if err != nil {
			return cmd.fail("publish to channel %q failed: %s", pub.channel, cmd.describeRequestError(err))
		}
		if _, err := fmt.Fprintln(cmd.stdout, msgID); err != nil {
			return cmd.fail("cannot write to stdout: %v", err)
		}
	}

	return clientExitOK
}

// sleepUntilDone waits for d and reports false if ctx ends first.
func sleepUntilDone(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()

	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// subFlags are the flags of sub. channels is the comma-separated list as
// given, and names the list after validation.
type subFlags struct {
	channels string
	names    []string
	member   string
	info     string
	count    int
}

// subCommand implements "wscluster sub": it subscribes, optionally joins,
// and prints notifications as JSON lines until interrupted or until --count
// messages have arrived. It reconnects after a drop.
func subCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newClientCmd("sub", "--channel C[,C2...] [--member M [--info JSON]] [--count N] [flags]", stdout, stderr)
	var sub subFlags
	cmd.flags.StringVar(&sub.channels, "channel", "", "comma-separated channels to subscribe to (required)")
	cmd.flags.StringVar(&sub.member, "member", "", "member id to join each channel's presence as")
	cmd.flags.StringVar(&sub.info, "info", "", `member info as a JSON object, such as '{"name":"Ada"}'; needs --member`)
	cmd.flags.IntVar(&sub.count, "count", 0, "exit after this many messages; 0 runs until interrupted")
	if status, done := cmd.parse(args); done {
		return status
	}
	if status, ok := cmd.validateSub(&sub); !ok {
		return status
	}

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c := cmd.connect(ctx, client.Options{Reconnect: true, Logger: logger})
	if c == nil {
		return clientExitFailure
	}
	defer c.Close()

	if status, ok := cmd.subscribeAndJoin(ctx, c, sub); !ok {
		return status
	}
	fmt.Fprintf(stderr, "wscluster sub: subscribed to %s; press Ctrl-C to stop\n", strings.Join(sub.names, ", "))

	return cmd.printNotifications(ctx, c, sub.count)
}

// validateSub checks the flags of sub and splits the channel list. The
// server checks the names themselves.
func (cmd *clientCmd) validateSub(sub *subFlags) (int, bool) {
	switch {
	case sub.channels == "":
		return cmd.badFlag("--channel is missing; name one or more channels, such as --channel news,sport"), false
	case sub.info != "" && sub.member == "":
		return cmd.badFlag("--info needs --member; pass the member id to join as"), false
	case sub.info != "" && !json.Valid([]byte(sub.info)):
		return cmd.badFlag(`--info %s is not valid JSON; pass an object, such as --info '{"name":"Ada"}'`, sub.info), false
	case sub.count < 0:
		return cmd.badFlag("--count %d must not be negative", sub.count), false
	}

	for name := range strings.SplitSeq(sub.channels, ",") {
		if name == "" {
			return cmd.badFlag("--channel %q contains an empty name; separate names with single commas", sub.channels), false
		}
		sub.names = append(sub.names, name)
	}

	return clientExitOK, true
}

// subscribeAndJoin subscribes to every channel and, with --member, joins
// each one and prints its roster as one JSON line {"channel", "members"}.
func (cmd *clientCmd) subscribeAndJoin(ctx context.Context, c *client.Client, sub subFlags) (int, bool) {
	for _, channel := range sub.names {
		reqCtx, cancel := cmd.requestContext(ctx)
		err := c.Subscribe(reqCtx, channel)
		cancel()
		if err != nil {
			return cmd.fail("subscribe to channel %q failed: %s", channel, cmd.describeRequestError(err)), false
		}
	}
	if sub.member == "" {
		return clientExitOK, true
	}

	// A nil info is omitted from the request, and the server treats it as {}.
	var info any
	if sub.info != "" {
		info = json.RawMessage(sub.info)
	}
	for _, channel := range sub.names {
		reqCtx, cancel := cmd.requestContext(ctx)
		members, err := c.Join(reqCtx, channel, sub.member, info)
		cancel()
		if err != nil {
			return cmd.fail("join channel %q as member %q failed: %s", channel, sub.member, cmd.describeRequestError(err)), false
		}
		if err := cmd.writeJSONLine(rosterLine{Channel: channel, Members: nonNilRoster(members)}); err != nil {
			return cmd.fail("%v", err), false
		}
	}

	return clientExitOK, true
}

// rosterLine is the roster that sub prints after a join.
type rosterLine struct {
	Channel string          `json:"channel"`
	Members []client.Member `json:"members"`
}

// notificationLine is the form in which sub prints a notification.
type notificationLine struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// printNotifications prints every server notification as one compact JSON
// line until ctx ends or count messages have arrived. Reconnects go to
// stderr, because they are not server notifications.
func (cmd *clientCmd) printNotifications(ctx context.Context, c *client.Client, count int) int {
	messages := 0
	for {
		var n client.Notification
		var ok bool
		select {
		case <-ctx.Done():
			return clientExitOK
		case n, ok = <-c.Notifications():
		}
		if !ok {
			return cmd.fail("connection closed; run the command again to subscribe again")
		}

		if n.Method == client.MethodReconnected {
			fmt.Fprintf(cmd.stderr, "wscluster sub: reconnected to %s and subscribed again\n", n.URL)
			continue
		}
		if err := cmd.writeJSONLine(notificationLine{Method: n.Method, Params: n.Params}); err != nil {
			return cmd.fail("%v", err)
		}

		if n.Method == client.MethodMessage {
			messages++
		}
		if count > 0 && messages >= count {
			return clientExitOK
		}
	}
}

// nonNilRoster returns members, or an empty roster in place of nil, so that
// it prints as [] and not null.
func nonNilRoster(members []client.Member) []client.Member {
	if members == nil {
		return []client.Member{}
	}

	return members
}

// membersCommand implements "wscluster members": it prints the roster of a
// channel as indented JSON.
func membersCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newClientCmd("members", "--channel C [flags]", stdout, stderr)
	channel := cmd.flags.String("channel", "", "channel whose presence roster to print (required)")
	if status, done := cmd.parse(args); done {
		return status
	}
	if *channel == "" {
		return cmd.badFlag("--channel is missing; name the channel whose roster to print")
	}

	c := cmd.connect(ctx, client.Options{})
	if c == nil {
		return clientExitFailure
	}
	defer c.Close()

	reqCtx, cancel := cmd.requestContext(ctx)
	members, err := c.Members(reqCtx, *channel)
	cancel()
	if err != nil {
		return cmd.fail("presence.members of channel %q failed: %s", *channel, cmd.describeRequestError(err))
	}

	out, err := json.MarshalIndent(nonNilRoster(members), "", "  ")
	if err != nil {
		return cmd.fail("encode roster: %v", err)
	}
	if _, err := fmt.Fprintln(cmd.stdout, string(out)); err != nil {
		return cmd.fail("cannot write to stdout: %v", err)
	}

	return clientExitOK
}
