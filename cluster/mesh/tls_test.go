package mesh

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), name+".pem")
	writePEM(t, file, "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, file: file}
}

// issue writes a node certificate for 127.0.0.1 and localhost, valid as
// server and client, and returns its certificate and key files.
func (ca *testCA) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, file, kind string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600))
}

func TestMutualTLSLinks(t *testing.T) {
	ca := newTestCA(t, "cluster-ca")
	tlsA := loadNodeTLS(t, ca, ca, "a")
	tlsB := loadNodeTLS(t, ca, ca, "b")

	a := startNode(t, "a", func(c *Config) { c.TLS = tlsA })
	b := startNode(t, "b", func(c *Config) { c.TLS = tlsB; c.Peers = []string{a.addr()} })
	a.waitLinkUps(t, "b", 1)
	b.waitLinkUps(t, "a", 1)
	a.send(t, "b", 1)
	b.send(t, "a", 1)
	a.waitFor(t, "envelope", func(events []Event) bool { return len(envelopesFrom(events, "b")) == 1 })
	b.waitFor(t, "envelope", func(events []Event) bool { return len(envelopesFrom(events, "a")) == 1 })
}

func TestTLSRejectsCertificateFromOtherCA(t *testing.T) {
	ca, other := newTestCA(t, "cluster-ca"), newTestCA(t, "other-ca")
	tlsA := loadNodeTLS(t, ca, ca, "a")

	// b trusts the cluster CA but presents a certificate of another CA.
	tlsB := loadNodeTLS(t, other, ca, "b")

	a := startNode(t, "a", func(c *Config) { c.TLS = tlsA })
	b := startNode(t, "b", func(c *Config) { c.TLS = tlsB; c.Peers = []string{a.addr()} })
	a.waitRejects(t, reasonAuth)
	b.waitRejects(t, reasonAuth)
	assert.Empty(t, a.snapshot())
	assert.Empty(t, b.snapshot())
}

func TestTLSRejectsPlainPeer(t *testing.T) {
	ca := newTestCA(t, "cluster-ca")
	tlsA := loadNodeTLS(t, ca, ca, "a")
	a := startNode(t, "a", func(c *Config) { c.TLS = tlsA })
	b := startNode(t, "b", func(c *Config) { c.Peers = []string{a.addr()} })

	a.waitRejects(t, reasonHandshake)
	b.waitRejects(t, reasonHandshake)
	assert.Empty(t, a.snapshot())
}

func TestLoadTLSErrors(t *testing.T) {
	ca := newTestCA(t, "cluster-ca")
	certFile, keyFile := ca.issue(t, "a")
	notPEM := filepath.Join(t.TempDir(), "empty.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))

	_, err := LoadTLS(certFile, keyFile, notPEM)
	require.ErrorIs(t, err, ErrNoCACert)
	_, err = LoadTLS(certFile, keyFile, filepath.Join(t.TempDir(), "missing.pem"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = LoadTLS(certFile, certFile, ca.file)
	require.Error(t, err, "a certificate is no key")

	cfg, err := LoadTLS(certFile, keyFile, ca.file)
	require.NoError(t, err)
	assert.Len(t, cfg.Certificates, 1)
}

// loadNodeTLS returns the TLS config of a node with a certificate from
// issuer that trusts the CA trusted.
func loadNodeTLS(t *testing.T, issuer, trusted *testCA, name string) *tls.Config {
	t.Helper()
	certFile, keyFile := issuer.issue(t, name)
	cfg, err := LoadTLS(certFile, keyFile, trusted.file)
	require.NoError(t, err)
	return cfg
}
