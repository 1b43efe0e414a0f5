package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// Certs are the TLS certificate the listeners present and, for mutual
// TLS, the CAs a client's certificate must chain to. Reload reads the
// files again; the tls.Config of Config takes the new ones on the next
// handshake. It is safe for concurrent use.
type Certs struct {
	certFile, keyFile, caFile string
	cur                       atomic.Pointer[certSet]
}

type certSet struct {
	cert *tls.Certificate
	// clientCAs is nil without mutual TLS.
	clientCAs *x509.CertPool
}

// LoadCerts reads a certificate and its key (PEM) and, if caFile is not
// empty, the CA certificates (PEM) that client certificates must chain to.
func LoadCerts(certFile, keyFile, caFile string) (*Certs, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
	}
	c := &Certs{certFile: certFile, keyFile: keyFile, caFile: caFile}
	s, err := c.read()
	if err != nil {
		return nil, err
	}
	c.cur.Store(s)
	return c, nil
}

// Reload reads the files again; on an error the certificates in force
// stay.
func (c *Certs) Reload() error {
	s, err := c.read()
	if err != nil {
		return err
	}
	c.cur.Store(s)
	return nil
}

func (c *Certs) read() (*certSet, error) {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	s := &certSet{cert: &cert}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		s.clientCAs = x509.NewCertPool()
		if !s.clientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s holds no PEM certificate", c.caFile)
		}
	}
	return s, nil
}

// MutualTLS reports whether clients must present a certificate.
func (c *Certs) MutualTLS() bool { return c.caFile != "" }

// Config is the servers' TLS configuration: TLS 1.2 or later, the
// certificate in force at each handshake, and with a client CA a client
// certificate required and verified against the CAs in force. Callers may
// clone it and add their protocols (ALPN).
func (c *Certs) Config() *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load().cert, nil },
	}
	if c.caFile != "" {
		// The client's certificate is verified here rather than by
		// crypto/tls's ClientCAs, so that a reload's CAs apply to the
		// next handshake.
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyClient(raw, c.cur.Load().clientCAs)
		}
	}
	return cfg
}

// verifyClient checks a client's certificate chain against the CAs.
func verifyClient(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("a client certificate is required")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("client certificate: %w", err)
		}
		certs[i] = c
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	return nil
}
