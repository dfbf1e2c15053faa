package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/auth"
)

const testSecret = "test-hmac-secret"

func TestMayUseChannel(t *testing.T) {
	restricted := &auth.Identity{Subject: "alice", Channels: []string{"room", "news*"}}
	cases := []struct {
		name     string
		identity *auth.Identity
		channel  string
		want     bool
	}{
		{"nil identity allows all", nil, "anything", true},
		{"nil channels allow all", &auth.Identity{Subject: "alice"}, "anything", true},
		{"empty list allows none", &auth.Identity{Subject: "alice", Channels: []string{}}, "room", false},
		{"exact match", restricted, "room", true},
		{"exact pattern is no prefix", restricted, "rooms", false},
		{"shorter than exact pattern", restricted, "roo", false},
		{"prefix alone", restricted, "news", true},
		{"prefix and suffix", restricted, "news-eu", true},
		{"prefix pattern is case sensitive", restricted, "News", false},
		{"unlisted channel", restricted, "other", false},
		{"lone star allows all", &auth.Identity{Channels: []string{"*"}}, "x", true},
		{"star inside pattern is literal", &auth.Identity{Channels: []string{"a*b"}}, "a*b", true},
		{"star inside pattern matches no other", &auth.Identity{Channels: []string{"a*b"}}, "axb", false},
		{"star in channel matches prefix", &auth.Identity{Channels: []string{"a*"}}, "a*b", true},
		{"channel named like a pattern", &auth.Identity{Channels: []string{"news"}}, "news*", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.identity.MayUseChannel(tc.channel))
		})
	}
}

func TestMayJoinAs(t *testing.T) {
	alice := &auth.Identity{Subject: "alice"}
	cases := []struct {
		name     string
		identity *auth.Identity
		member   string
		want     bool
	}{
		{"nil identity allows any member", nil, "bob", true},
		{"subject itself", alice, "alice", true},
		{"other member", alice, "bob", false},
		{"case differs", alice, "Alice", false},
		{"subject as prefix", alice, "alice2", false},
		{"empty member", alice, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.identity.MayJoinAs(tc.member))
		})
	}
}

// signHS256 signs claims with testSecret.
func signHS256(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()

	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	require.NoError(t, err)
	return token
}

// noneToken builds an unsigned token with "alg": "none" by hand, as an
// attacker would.
func noneToken(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload)) + "."
}

func TestVerifyHMACClaims(t *testing.T) {
	v := auth.NewHMACVerifier([]byte(testSecret))
	assert.Equal(t, "HS256", v.Algorithm())
	exp := time.Now().Add(time.Hour).Truncate(time.Second)

	id, err := v.Verify(signHS256(t, jwt.MapClaims{"sub": "alice", "channels": []string{"room", "news*"}, "exp": exp.Unix()}))
	require.NoError(t, err)
	assert.Equal(t, "alice", id.Subject)
	assert.Equal(t, []string{"room", "news*"}, id.Channels)
	assert.True(t, exp.Equal(id.ExpiresAt), "ExpiresAt %s, want %s", id.ExpiresAt, exp)

	// Without exp and channels the token never expires and allows every
	// channel.
	id, err = v.Verify(signHS256(t, jwt.MapClaims{"sub": "bob"}))
	require.NoError(t, err)
	assert.Nil(t, id.Channels)
	assert.True(t, id.ExpiresAt.IsZero())

	// An empty list is kept apart from a missing claim: it allows nothing.
	id, err = v.Verify(signHS256(t, jwt.MapClaims{"sub": "carol", "channels": []string{}}))
	require.NoError(t, err)
	assert.NotNil(t, id.Channels)
	assert.False(t, id.MayUseChannel("room"))
}

func TestVerifyRejects(t *testing.T) {
	v := auth.NewHMACVerifier([]byte(testSecret))
	now := time.Now()
	otherSecret, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice"}).SignedString([]byte("other"))
	require.NoError(t, err)
	hs512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "alice"}).SignedString([]byte(testSecret))
	require.NoError(t, err)

	cases := []struct {
		name   string
		token  string
		reason string
	}{
		{"malformed", "not-a-token", "token is malformed"},
		{"other secret", otherSecret, "signature is invalid"},
		{"other HMAC algorithm", hs512, "signing method HS512 is invalid"},
		{"alg none", noneToken(`{"sub":"alice"}`), "signing method none is invalid"},
		{"expired", signHS256(t, jwt.MapClaims{"sub": "alice", "exp": now.Add(-time.Minute).Unix()}), "token is expired"},
		{"not yet valid", signHS256(t, jwt.MapClaims{"sub": "alice", "nbf": now.Add(time.Minute).Unix()}), "token is not valid yet"},
		{"missing sub", signHS256(t, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}), "sub claim is missing"},
		{"empty sub", signHS256(t, jwt.MapClaims{"sub": ""}), "sub claim is missing"},
		{"channels not a list", signHS256(t, jwt.MapClaims{"sub": "alice", "channels": "room"}), "channels"},
		{"channels null", signHS256(t, jwt.MapClaims{"sub": "alice", "channels": nil}), "channels claim is null"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(tc.token)
			require.Error(t, err)
			assert.Nil(t, id)
			assert.ErrorIs(t, err, auth.ErrInvalidToken)
			assert.Contains(t, err.Error(), tc.reason)
			assert.NotContains(t, err.Error(), tc.token, "the error must not contain the token")
		})
	}
}

func TestVerifyMissingToken(t *testing.T) {
	_, err := auth.NewHMACVerifier([]byte(testSecret)).Verify("")
	assert.ErrorIs(t, err, auth.ErrMissingToken)
}

func TestVerifyLeeway(t *testing.T) {
	v := auth.NewHMACVerifier([]byte(testSecret))
	require.Equal(t, 5*time.Second, auth.Leeway)

	// NumericDate has whole seconds, so a claim 2 s off is 2-3 s off after
	// truncation: inside the leeway with room for a slow test machine.
	now := time.Now()
	_, err := v.Verify(signHS256(t, jwt.MapClaims{"sub": "alice", "exp": now.Add(-2 * time.Second).Unix()}))
	assert.NoError(t, err, "exp 2 s ago is inside the leeway")
	_, err = v.Verify(signHS256(t, jwt.MapClaims{"sub": "alice", "nbf": now.Add(2 * time.Second).Unix()}))
	assert.NoError(t, err, "nbf 2 s ahead is inside the leeway")

	_, err = v.Verify(signHS256(t, jwt.MapClaims{"sub": "alice", "exp": now.Add(-7 * time.Second).Unix()}))
	assert.ErrorIs(t, err, jwt.ErrTokenExpired, "exp 7 s ago is beyond the leeway")
	_, err = v.Verify(signHS256(t, jwt.MapClaims{"sub": "alice", "nbf": now.Add(8 * time.Second).Unix()}))
	assert.ErrorIs(t, err, jwt.ErrTokenNotValidYet, "nbf 8 s ahead is beyond the leeway")
}

func TestMintHS256RoundTrip(t *testing.T) {
	v := auth.NewHMACVerifier([]byte(testSecret))

	token, err := auth.MintHS256([]byte(testSecret), "alice", []string{"room"}, time.Minute)
	require.NoError(t, err)
	id, err := v.Verify(token)
	require.NoError(t, err)
	assert.Equal(t, "alice", id.Subject)
	assert.Equal(t, []string{"room"}, id.Channels)
	assert.WithinDuration(t, time.Now().Add(time.Minute), id.ExpiresAt, 2*time.Second)

	// Nil channels leave the claim out, so the token allows every channel.
	token, err = auth.MintHS256([]byte(testSecret), "alice", nil, time.Minute)
	require.NoError(t, err)
	id, err = v.Verify(token)
	require.NoError(t, err)
	assert.Nil(t, id.Channels)

	// An empty list stays in the token and allows no channel.
	token, err = auth.MintHS256([]byte(testSecret), "alice", []string{}, time.Minute)
	require.NoError(t, err)
	id, err = v.Verify(token)
	require.NoError(t, err)
	assert.NotNil(t, id.Channels)
	assert.False(t, id.MayUseChannel("room"))
}

// pemBlock encodes der as one PEM block of type kind.
func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

// publicKeyPEM returns pub as a PKIX PUBLIC KEY block.
func publicKeyPEM(t *testing.T, pub any) []byte {
	t.Helper()

	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	return pemBlock("PUBLIC KEY", der)
}

// certificatePEM returns a self-signed certificate for key as a CERTIFICATE
// block.
func certificatePEM(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()

	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wscluster test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	require.NoError(t, err)
	return pemBlock("CERTIFICATE", der)
}

func TestPublicKeyVerifierRSA(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	token, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "alice"}).SignedString(key)
	require.NoError(t, err)

	forms := map[string][]byte{
		"PUBLIC KEY":     publicKeyPEM(t, &key.PublicKey),
		"RSA PUBLIC KEY": pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&key.PublicKey)),
		"CERTIFICATE":    certificatePEM(t, key),
	}
	for name, data := range forms {
		t.Run(name, func(t *testing.T) {
			v, err := auth.NewPublicKeyVerifier(data)
			require.NoError(t, err)
			assert.Equal(t, "RS256", v.Algorithm())
			id, err := v.Verify(token)
			require.NoError(t, err)
			assert.Equal(t, "alice", id.Subject)
		})
	}
}

func TestPublicKeyVerifierECDSA(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	v, err := auth.NewPublicKeyVerifier(publicKeyPEM(t, &key.PublicKey))
	require.NoError(t, err)
	assert.Equal(t, "ES256", v.Algorithm())

	token, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": "alice"}).SignedString(key)
	require.NoError(t, err)
	id, err := v.Verify(token)
	require.NoError(t, err)
	assert.Equal(t, "alice", id.Subject)

	// A key of another pair does not verify the token.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	otherVerifier, err := auth.NewPublicKeyVerifier(publicKeyPEM(t, &other.PublicKey))
	require.NoError(t, err)
	_, err = otherVerifier.Verify(token)
	assert.ErrorIs(t, err, auth.ErrInvalidToken)
}

// TestAlgorithmConfusion signs an HS256 token with the RSA public key's PEM
// bytes as the HMAC secret, which fools a verifier that lets the token pick
// its algorithm.
func TestAlgorithmConfusion(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	pubPEM := publicKeyPEM(t, &key.PublicKey)
	v, err := auth.NewPublicKeyVerifier(pubPEM)
	require.NoError(t, err)

	forged, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "mallory"}).SignedString(pubPEM)
	require.NoError(t, err)
	_, err = v.Verify(forged)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	assert.Contains(t, err.Error(), "signing method HS256 is invalid")

	_, err = v.Verify(noneToken(`{"sub":"mallory"}`))
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	assert.Contains(t, err.Error(), "signing method none is invalid")
}

func TestPublicKeyVerifierErrors(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	edPublic, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)

	cases := []struct {
		name   string
		data   []byte
		reason string
	}{
		{"empty file", nil, "no PEM block found"},
		{"not PEM", []byte("ssh-rsa AAAAB3NzaC1yc2E"), "no PEM block found"},
		{"P-384 key", publicKeyPEM(t, &p384.PublicKey), "ES256 needs P-256"},
		{"ed25519 key", publicKeyPEM(t, edPublic), "unsupported public key type ed25519.PublicKey"},
		{"garbage in PUBLIC KEY block", pemBlock("PUBLIC KEY", []byte("garbage")), "want a PUBLIC KEY block"},
		{"garbage in CERTIFICATE block", pemBlock("CERTIFICATE", []byte("garbage")), "parse certificate"},
		{"garbage in RSA PUBLIC KEY block", pemBlock("RSA PUBLIC KEY", []byte("garbage")), "parse RSA public key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := auth.NewPublicKeyVerifier(tc.data)
			require.Error(t, err)
			assert.Nil(t, v)
			assert.Contains(t, err.Error(), tc.reason)
		})
	}
}
