// Package auth verifies the JSON Web Tokens of clients and decides what a
// verified client may do.
//
// A Verifier is pinned to one algorithm, chosen by its key: HS256 for a
// shared secret, RS256 for an RSA public key and ES256 for an ECDSA P-256
// public key. A token signed with any other algorithm, "none" included, is
// rejected, which rules out algorithm confusion attacks where an RSA public
// key is misused as an HMAC secret.
package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Leeway is the clock skew tolerated when checking exp and nbf, so that a
// token minted on a host whose clock is slightly off still works.
const Leeway = 5 * time.Second

// ErrInvalidToken wraps every reason a token is rejected.
var ErrInvalidToken = errors.New("invalid token")

// ErrMissingToken is returned when a request carries no token.
var ErrMissingToken = errors.New("missing token: pass it in the token query parameter or an Authorization: Bearer header")

// Identity is the set of permissions of a verified token.
type Identity struct {
	// Subject is the token's sub: the only member id the client may join as.
	Subject string
	// Channels lists exact channel names and prefixes ending in '*'. Nil
	// means the token has no channels claim and allows every channel.
	Channels []string
	// ExpiresAt is the token's exp, or the zero time when it has none.
	ExpiresAt time.Time
}

// MayUseChannel reports whether the identity may subscribe to, publish to,
// join and read the roster of channel.
func (id *Identity) MayUseChannel(channel string) bool {
	if id == nil || id.Channels == nil {
		return true
	}
	for _, pattern := range id.Channels {
		if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
			if strings.HasPrefix(channel, prefix) {
				return true
			}
		} else if pattern == channel {
			return true
		}
	}
	return false
}

// MayJoinAs reports whether the identity may join presence as member.
func (id *Identity) MayJoinAs(member string) bool {
	return id == nil || id.Subject == member
}

// claims is the token payload: the registered claims plus "channels".
// omitzero leaves out only a nil list, so that a minted empty list still
// allows no channel.
type claims struct {
	jwt.RegisteredClaims
	Channels channelList `json:"channels,omitzero"`
}

// channelList is the "channels" claim. It stays nil when the claim is
// missing and is non-nil, maybe empty, when the claim is a list.
type channelList []string

// UnmarshalJSON rejects a null claim instead of reading it as a missing one.
// A missing claim allows every channel, but a backend that writes null, as
// Go does for a nil slice, may have meant no channel at all.
func (l *channelList) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return errors.New("the channels claim is null: leave it out to allow every channel, or give a list of channels")
	}
	var list []string
	if err := json.Unmarshal(data, &list); err != nil {
		return fmt.Errorf("the channels claim is not a list of strings: %w", err)
	}
	*l = append(channelList{}, list...)
	return nil
}

// Verifier checks tokens against one key and one algorithm.
type Verifier struct {
	key    any
	method string
	parser *jwt.Parser
}

// NewHMACVerifier returns a Verifier of HS256 tokens signed with secret.
func NewHMACVerifier(secret []byte) *Verifier {
	return newVerifier(secret, jwt.SigningMethodHS256.Alg())
}

// NewPublicKeyVerifier returns a Verifier for a PEM-encoded public key: an
// RSA key verifies RS256 tokens and an ECDSA P-256 key ES256 tokens.
func NewPublicKeyVerifier(pemData []byte) (*Verifier, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, errors.New("no PEM block found: want a PEM file with a PUBLIC KEY or CERTIFICATE block")
	}
	key, err := parsePublicKey(block)
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		return newVerifier(k, jwt.SigningMethodRS256.Alg()), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ECDSA key on curve %s: ES256 needs P-256", k.Curve.Params().Name)
		}
		return newVerifier(k, jwt.SigningMethodES256.Alg()), nil
	default:
		return nil, fmt.Errorf("unsupported public key type %T: want RSA (RS256) or ECDSA P-256 (ES256)", key)
	}
}

func parsePublicKey(block *pem.Block) (any, error) {
	switch block.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		return cert.PublicKey, nil
	case "RSA PUBLIC KEY":
		key, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse RSA public key: %w", err)
		}
		return key, nil
	default:
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse %s block: %w; want a PUBLIC KEY block", block.Type, err)
		}
		return key, nil
	}
}

func newVerifier(key any, method string) *Verifier {
	return &Verifier{
		key:    key,
		method: method,
		parser: jwt.NewParser(jwt.WithValidMethods([]string{method}), jwt.WithLeeway(Leeway)),
	}
}

// Algorithm returns the one algorithm this Verifier accepts.
func (v *Verifier) Algorithm() string { return v.method }

// Verify checks the token's signature, exp and nbf and returns what it
// allows. Every error wraps ErrInvalidToken and never contains the token.
func (v *Verifier) Verify(token string) (*Identity, error) {
	if token == "" {
		return nil, ErrMissingToken
	}
	var c claims
	_, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.key, nil })
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: the sub claim is missing or empty", ErrInvalidToken)
	}
	id := &Identity{Subject: c.Subject, Channels: c.Channels}
	if c.ExpiresAt != nil {
		id.ExpiresAt = c.ExpiresAt.Time
	}
	return id, nil
}

// MintHS256 signs a token for local trials and tests: sub, an optional
// channels claim (nil leaves it out), and exp ttl from now.
func MintHS256(secret []byte, sub string, channels []string, ttl time.Duration) (string, error) {
	now := time.Now()
	c := claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	if channels != nil {
		c.Channels = append(channelList{}, channels...)
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}
