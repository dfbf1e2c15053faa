package mesh

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ErrNoCACert is returned by LoadTLS when the CA file holds no PEM
// certificate.
var ErrNoCACert = errors.New("no PEM certificate in CA file")

// LoadTLS builds the mutual TLS configuration of the cluster links from
// PEM files (--cluster-tls-cert, --cluster-tls-key, --cluster-tls-ca).
// Every node presents certFile, and accepts only peers whose certificate
// chains to a CA in caFile, as server and as client. A dialer also checks
// that the peer's certificate names the host it dialed: the host of the
// --peers entry, or of the address a peer advertised.
func LoadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load cluster TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read cluster TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster TLS CA %s: %w", caFile, ErrNoCACert)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}
