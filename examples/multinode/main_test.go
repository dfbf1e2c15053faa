package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMultinodeCrossesNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer

	require.NoError(t, run(ctx, &out, slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.Contains(t, out.String(), "cluster ready")
	require.Contains(t, out.String(), "n2 got presence.join: bob on node n1")
	require.Contains(t, out.String(), `n2 got message on news: {"headline":"hello from n1"}`)
}
