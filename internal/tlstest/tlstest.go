// Package tlstest makes the certificates tests of TLS connections need: a
// certificate authority, a server certificate it signed for the loopback
// address and "localhost", and a client certificate it signed, generated
// in-process with crypto/x509 and written as PEM files into a test's
// temporary directory.
package tlstest

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
)

// Certs are the PEM files of a certificate authority and of a server and a
// client certificate it signed.
type Certs struct {
	CAFile                string
	ServerCert, ServerKey string
	ClientCert, ClientKey string

	ca *x509.CertPool
}

// New generates the certificates into t.TempDir().
func New(t testing.TB) *Certs { return NewNamed(t, "kiln") }

// NewNamed is New with name in the CA's and the client's subjects, to tell
// two sets apart.
func NewNamed(t testing.TB, name string) *Certs {
	t.Helper()
	dir := t.TempDir()
	caKey := key(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	c := &Certs{CAFile: filepath.Join(dir, "ca.pem"), ca: x509.NewCertPool()}
	c.ca.AddCert(caCert)
	writePEM(t, c.CAFile, "CERTIFICATE", caDER)
	leaf := func(serial int64, file, cn string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
		k := key(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile = filepath.Join(dir, file+".pem"), filepath.Join(dir, file+"-key.pem")
		writePEM(t, certFile, "CERTIFICATE", der)
		writePEM(t, keyFile, "EC PRIVATE KEY", kder)
		return certFile, keyFile
	}
	c.ServerCert, c.ServerKey = leaf(2, "server", "localhost", x509.ExtKeyUsageServerAuth)
	c.ClientCert, c.ClientKey = leaf(3, "client", name+" client", x509.ExtKeyUsageClientAuth)
	return c
}

// ServerConfig is a server's TLS configuration with the server
// certificate; with clientCerts, it asks for and checks a client
// certificate signed by the CA.
func (c *Certs) ServerConfig(t testing.TB, clientCerts bool) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(c.ServerCert, c.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCerts {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = c.ca
	}
	return cfg
}

// ClientConfig is a client's TLS configuration trusting the CA and
// showing the client certificate.
func (c *Certs) ClientConfig(t testing.TB) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(c.ClientCert, c.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: c.ca, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// Pool holds the CA, for a client's RootCAs or a server's ClientCAs.
func (c *Certs) Pool() *x509.CertPool { return c.ca }

func key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
