package redisbus_test

// Tests of whole wscluster nodes with the redis engine over TLS, against a
// redis-server that listens only on a TLS port.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wscluster/wscluster/config"
	"github.com/wscluster/wscluster/internal/redistest"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// file is the PEM file of the CA certificate.
	file string
}

// newTestCA creates a CA and writes its certificate to dir.
func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)

	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue signs a certificate for 127.0.0.1 with the given extended key
// usage and writes it and its key to dir as name.pem and name.key. It
// returns the two file paths.
func (ca *testCA) issue(t *testing.T, dir, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)

	certFile = filepath.Join(dir, name+".pem")
	keyFile = filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, blockType string, der []byte) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	require.NoError(t, os.WriteFile(path, data, 0o600))
}

// skipUnlessRedisTLS skips the test when redis-server was built without
// TLS. Started with a TLS port but no certificate, a TLS build exits with
// "No tls-cert-file configured", while a build without TLS rejects the
// tls-port option itself.
func skipUnlessRedisTLS(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		// redistest.StartProcess skips or fails with the install hint.
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	port := strconv.Itoa(freeLoopbackPort(t))
	out, _ := exec.CommandContext(ctx, "redis-server", "--port", "0", "--bind", "127.0.0.1", "--tls-port", port).CombinedOutput()
	if !strings.Contains(string(out), "tls-cert-file") {
		t.Skipf("redis-server seems to be built without TLS, so the TLS tests cannot run; its output for --tls-port was:\n%s", out)
	}
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment
// ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// startTLSRedis starts a redis-server that accepts only TLS connections,
// with the server certificate serverCert signed by ca. With
// authClients, it also requires a client certificate signed by ca.
func startTLSRedis(t *testing.T, ca *testCA, serverCert, serverKey string, authClients bool) string {
	t.Helper()
	skipUnlessRedisTLS(t)
	auth := "no"
	if authClients {
		auth = "yes"
	}
	dir := t.TempDir()
	srv := redistest.StartProcess(t, "redis-server", func(port int) []string {
		return []string{
			"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--tls-cert-file", serverCert, "--tls-key-file", serverKey,
			"--tls-ca-cert-file", ca.file, "--tls-auth-clients", auth,
		}
	})
	return srv.Addr()
}

// tlsNodeConfig returns a node configuration for the Redis server at addr
// with the given --redis-tls-ca, --redis-tls-cert and --redis-tls-key.
func tlsNodeConfig(addr, caFile, certFile, keyFile string) func(*config.Node) {
	return func(cfg *config.Node) {
		cfg.RedisAddr = addr
		cfg.RedisTLSCA = caFile
		cfg.RedisTLSCert = certFile
		cfg.RedisTLSKey = keyFile
	}
}

// neverReadyWindow is how long a node that cannot reach Redis is watched:
// five peer timeouts, many more than a working node needs to become
// ready.
const neverReadyWindow = 5 * enginePeerTimeout

func TestTLSNodesExchangeMessages(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	serverCert, serverKey := ca.issue(t, dir, "redis", x509.ExtKeyUsageServerAuth)
	addr := startTLSRedis(t, ca, serverCert, serverKey, false)

	// Both nodes trust the CA and present no certificate, as
	// LoadTLS(ca, "", "") configures them.
	nodes := []*engineNode{
		startEngineNode(t, "t1", tlsNodeConfig(addr, ca.file, "", "")),
		startEngineNode(t, "t2", tlsNodeConfig(addr, ca.file, "", "")),
	}
	for _, n := range nodes {
		n.waitReady(t, true)
		n.waitConnectedPeers(t, 1)
	}
	clients := subscribeClients(t, nodes, "tls")
	took := exchangeMessages(t, clients, "tls", "over-tls")
	t.Logf("two nodes exchanged messages over TLS in %s", took)

	// A node that speaks plain TCP to the TLS port, and one that trusts
	// another CA, never subscribe, so they stay not ready and reject
	// publishes with 1005.
	other := newTestCA(t, dir, "other-ca")
	outsiders := []*engineNode{
		startEngineNode(t, "plain", func(cfg *config.Node) { cfg.RedisAddr = addr }),
		startEngineNode(t, "wrong-ca", tlsNodeConfig(addr, other.file, "", "")),
	}
	for _, n := range outsiders {
		n.assertNeverReady(t, neverReadyWindow)
		c := subscribeClients(t, []*engineNode{n}, "tls")[0]
		requireBackplaneUnavailable(t, c, "tls")
	}

	// The TLS nodes still exchange messages, and heard nothing from the
	// outsiders: a message from them would fail awaitMessages.
	exchangeMessages(t, clients, "tls", "after-outsiders")
	for _, n := range nodes {
		require.Equal(t, 1, n.node.Status().ConnectedPeers, "node %s", n.id)
	}
}

func TestTLSClientCertificateRequired(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	serverCert, serverKey := ca.issue(t, dir, "redis", x509.ExtKeyUsageServerAuth)
	addr := startTLSRedis(t, ca, serverCert, serverKey, true)

	clientCert, clientKey := ca.issue(t, dir, "wscluster", x509.ExtKeyUsageClientAuth)
	nodes := []*engineNode{
		startEngineNode(t, "c1", tlsNodeConfig(addr, ca.file, clientCert, clientKey)),
		startEngineNode(t, "c2", tlsNodeConfig(addr, ca.file, clientCert, clientKey)),
	}
	for _, n := range nodes {
		n.waitReady(t, true)
		n.waitConnectedPeers(t, 1)
	}
	clients := subscribeClients(t, nodes, "mtls")
	took := exchangeMessages(t, clients, "mtls", "with-client-cert")
	t.Logf("two nodes with client certificates exchanged messages in %s", took)

	// Without a client certificate the server ends the handshake.
	anonymous := startEngineNode(t, "anonymous", tlsNodeConfig(addr, ca.file, "", ""))
	anonymous.assertNeverReady(t, neverReadyWindow)
	c := subscribeClients(t, []*engineNode{anonymous}, "mtls")[0]
	requireBackplaneUnavailable(t, c, "mtls")

	exchangeMessages(t, clients, "mtls", "after-anonymous")
}
