package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/auth"
)

const tokenTestSecret = "token-test-secret"

// noEnv is a lookupEnv that finds no variable.
func noEnv(string) (string, bool) { return "", false }

// runMintToken runs mintToken and returns its exit status, stdout and
// stderr.
func runMintToken(args []string, lookupEnv func(string) (string, bool)) (int, string, string) {
	var stdout, stderr bytes.Buffer
	status := mintToken(args, &stdout, &stderr, lookupEnv)
	return status, stdout.String(), stderr.String()
}

// verifyMinted requires stdout to be one token line that secret verifies,
// and returns what the token allows.
func verifyMinted(t *testing.T, stdout, secret string) *auth.Identity {
	t.Helper()

	require.True(t, strings.HasSuffix(stdout, "\n"), "the token must end with a newline: %q", stdout)
	token := strings.TrimSuffix(stdout, "\n")
	require.NotContains(t, token, "\n", "stdout must contain the token alone")
	id, err := auth.NewHMACVerifier([]byte(secret)).Verify(token)
	require.NoError(t, err)
	return id
}

func TestTokenSubAndChannels(t *testing.T) {
	status, stdout, stderr := runMintToken([]string{
		"--secret", tokenTestSecret, "--sub", "alice", "--channels", "room, news*", "--ttl", "10m",
	}, noEnv)
	require.Equal(t, 0, status, "stderr: %s", stderr)
	assert.Empty(t, stderr)

	id := verifyMinted(t, stdout, tokenTestSecret)
	assert.Equal(t, "alice", id.Subject)
	assert.Equal(t, []string{"room", "news*"}, id.Channels)
	assert.WithinDuration(t, time.Now().Add(10*time.Minute), id.ExpiresAt, 5*time.Second)
	assert.True(t, id.MayUseChannel("news-eu"))
	assert.False(t, id.MayUseChannel("other"))
}

func TestTokenDefaults(t *testing.T) {
	status, stdout, stderr := runMintToken([]string{"--secret", tokenTestSecret, "--sub", "bob"}, noEnv)
	require.Equal(t, 0, status, "stderr: %s", stderr)

	// Without --channels the token has no channels claim and allows every
	// channel. --ttl defaults to one hour.
	id := verifyMinted(t, stdout, tokenTestSecret)
	assert.Equal(t, "bob", id.Subject)
	assert.Nil(t, id.Channels)
	assert.WithinDuration(t, time.Now().Add(time.Hour), id.ExpiresAt, 5*time.Second)
}

func TestTokenSecretFromEnv(t *testing.T) {
	env := func(name string) (string, bool) {
		if name == "WSCLUSTER_TOKEN_HMAC_SECRET" {
			return "env-secret", true
		}
		return "", false
	}

	status, stdout, stderr := runMintToken([]string{"--sub", "alice"}, env)
	require.Equal(t, 0, status, "stderr: %s", stderr)
	assert.Equal(t, "alice", verifyMinted(t, stdout, "env-secret").Subject)

	// The flag wins over the variable.
	status, stdout, stderr = runMintToken([]string{"--secret", tokenTestSecret, "--sub", "alice"}, env)
	require.Equal(t, 0, status, "stderr: %s", stderr)
	verifyMinted(t, stdout, tokenTestSecret)
}

func TestTokenUsageErrors(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		reason string
	}{
		{"missing secret", []string{"--sub", "alice"}, "missing --secret"},
		{"missing sub", []string{"--secret", tokenTestSecret}, "missing --sub"},
		{"control character in sub", []string{"--secret", tokenTestSecret, "--sub", "al\x07ice"}, "invalid value for --sub"},
		{"sub over 128 bytes", []string{"--secret", tokenTestSecret, "--sub", strings.Repeat("a", 129)}, "invalid value for --sub"},
		{"zero ttl", []string{"--secret", tokenTestSecret, "--sub", "alice", "--ttl", "0s"}, "invalid value 0s for --ttl"},
		{"invalid ttl", []string{"--secret", tokenTestSecret, "--sub", "alice", "--ttl", "soon"}, `invalid value "soon" for flag -ttl`},
		{"unknown flag", []string{"--secret", tokenTestSecret, "--sub", "alice", "--aud", "x"}, "aud"},
		{"positional argument", []string{"--secret", tokenTestSecret, "--sub", "alice", "extra"}, `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, stdout, stderr := runMintToken(tc.args, noEnv)
			assert.Equal(t, 2, status)
			assert.Empty(t, stdout, "no token may be printed")
			assert.Contains(t, stderr, tc.reason)
			assert.NotContains(t, stderr, tokenTestSecret, "the secret must not be printed")
		})
	}
}

func TestTokenHelp(t *testing.T) {
	status, stdout, stderr := runMintToken([]string{"-h"}, noEnv)
	assert.Equal(t, 0, status)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "-secret")
	assert.Contains(t, stderr, "-channels")
}

func TestTokenRejectsInvalidChannels(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := mintToken([]string{"--secret", tokenTestSecret, "--sub", "alice", "--channels", "room,bad\u0001name"}, &stdout, &stderr,
		func(string) (string, bool) { return "", false })

	require.Equal(t, 2, code)
	require.Empty(t, stdout.String())
	require.Contains(t, stderr.String(), "invalid value for --channels")
}
