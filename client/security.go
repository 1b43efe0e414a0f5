package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// bearerToken sends "Bearer <token>" as every call's authorization: md,
// made once, which gRPC only reads.
type bearerToken struct{ md map[string]string }

func newBearerToken(token string) bearerToken {
	return bearerToken{md: map[string]string{"authorization": "Bearer " + token}}
}

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return t.md, nil
}

// RequireTransportSecurity is false so that a token also works in
// plaintext, on loopback or a trusted network (Options.Token says so).
func (bearerToken) RequireTransportSecurity() bool { return false }

// TLSFiles name the PEM files of a TLS connection to Kiln.
type TLSFiles struct {
	// CA is the CA certificates the servers' certificates must chain to;
	// empty: the system's.
	CA string
	// Cert and Key are the client's certificate and key, for servers
	// that ask for one (kiln serve --client-ca); empty: none.
	Cert, Key string
}

// LoadTLS reads the files into a TLS configuration for Options.TLS.
func LoadTLS(f TLSFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("kiln client: CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kiln client: CA %s holds no PEM certificate", f.CA)
		}
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("kiln client: a client certificate needs both TLSFiles.Cert and TLSFiles.Key")
	}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("kiln client: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
