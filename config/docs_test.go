package config

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the flag list in docs/configuration.md from Usage")

const docsPath = "../docs/configuration.md"

// docsMarker starts the flag list in docs/configuration.md; the list runs
// to the end of the file.
const docsMarker = "The list below is the output of `bin/wscluster serve --help`.\n\n```\n"

// TestUsageMatchesDocs keeps docs/configuration.md in step with the flags.
// After a change of a flag, run:
//
//	go test ./config -run TestUsageMatchesDocs -update
func TestUsageMatchesDocs(t *testing.T) {
	doc, err := os.ReadFile(docsPath)
	require.NoError(t, err)
	var usage bytes.Buffer
	Usage(&usage)

	// The doc's list starts at the first flag.
	text := usage.String()
	first := strings.Index(text, "  --listen")
	require.GreaterOrEqual(t, first, 0, "usage lacks --listen")
	want := text[first:] + "```\n"

	head, _, found := strings.Cut(string(doc), docsMarker)
	require.True(t, found, "docs/configuration.md lacks the line that starts the flag list")
	if *update {
		require.NoError(t, os.WriteFile(docsPath, []byte(head+docsMarker+want), 0o644))
		return
	}
	require.True(t, strings.HasSuffix(string(doc), docsMarker+want),
		"docs/configuration.md is out of date with config.Usage; run: go test ./config -run TestUsageMatchesDocs -update")
}
