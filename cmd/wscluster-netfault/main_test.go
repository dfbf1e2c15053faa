package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// These cases fail before any change reaches the kernel, so they run
// anywhere; the kernel paths are tested in package netfault.
func TestRunUsageErrors(t *testing.T) {
	cases := []struct {
		args    []string
		message string
	}{
		{nil, "usage: wscluster-netfault"},
		{[]string{"explode"}, `unknown command "explode"`},
		{[]string{"partition"}, "partition needs --drop LIST"},
		{[]string{"partition", "--drop", "n2"}, `address "n2"`},
		{[]string{"partition", "--drop", "10.0.0.2", "extra"}, "takes no arguments"},
		{[]string{"degrade", "--loss", "1.5"}, "loss 1.5"},
		{[]string{"degrade", "--jitter", "10ms"}, "without a delay"},
		{[]string{"degrade", "--delay", "soon"}, "invalid value"},
		{[]string{"degrade", "--delay", "1ms", "--delay-mechanism", "tc"}, `delay mechanism "tc"`},
		{[]string{"heal", "now"}, "takes no arguments"},
		{[]string{"reset"}, "reset needs --peers LIST"},
		{[]string{"reset", "--peers", ","}, "reset needs --peers LIST"},
		{[]string{"reset", "--peers", "10.0.0.2", "--mechanism", "magic"}, `reset mechanism "magic"`},
		{[]string{"reset", "--peers", "10.0.0.2", "--hold", "1h"}, "reset hold 1h0m0s"},
		{[]string{"reset", "--peers", "0.0.0.0"}, "unspecified"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(c.args, &stdout, &stderr)
		assert.Equal(t, exitUsage, code, "args %q: %s", c.args, stderr.String())
		assert.Contains(t, stderr.String(), c.message, "args %q", c.args)
		assert.Empty(t, stdout.String(), "args %q", c.args)
	}
}

func TestRunHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	assert.Equal(t, exitOK, run([]string{"help"}, &stdout, &stderr))
	assert.True(t, strings.HasPrefix(stdout.String(), "usage: wscluster-netfault"), stdout.String())

	stdout.Reset()
	assert.Equal(t, exitOK, run([]string{"degrade", "-h"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "-loss fraction")
}
