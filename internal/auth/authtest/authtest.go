// Package authtest makes what tests of authentication need: a CA with a
// server certificate for the loopback addresses and a client certificate,
// written as PEM files, and token files with fresh tokens.
package authtest

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
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/auth"
)

// PKI is a CA and certificates it signed, as files in a test's directory.
type PKI struct {
	// CAFile is the CA's certificate; CertFile and KeyFile the server's
	// (for 127.0.0.1, ::1 and localhost); ClientCertFile and ClientKeyFile
	// a client's.
	CAFile, CertFile, KeyFile, ClientCertFile, ClientKeyFile string
	// Pool holds the CA, for a client's RootCAs.
	Pool *x509.CertPool
	// ClientCert is the client's certificate and key.
	ClientCert tls.Certificate
}

// NewPKI makes a CA, a server and a client certificate in a temporary
// directory of tb. name tells two PKIs apart in their subjects.
func NewPKI(tb testing.TB, name string) *PKI {
	tb.Helper()
	dir := tb.TempDir()
	caKey := newKey(tb)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	p := &PKI{Pool: x509.NewCertPool()}
	p.Pool.AddCert(ca)
	p.CAFile = writePEM(tb, dir, "ca.pem", "CERTIFICATE", caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, certName, keyName string) (string, string, tls.Certificate) {
		key := newKey(tb)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			tb.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			tb.Fatal(err)
		}
		cf := writePEM(tb, dir, certName, "CERTIFICATE", der)
		kf := writePEM(tb, dir, keyName, "EC PRIVATE KEY", keyDER)
		pair, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			tb.Fatal(err)
		}
		return cf, kf, pair
	}
	p.CertFile, p.KeyFile, _ = issue(2, "localhost", x509.ExtKeyUsageServerAuth, "server.pem", "server-key.pem")
	p.ClientCertFile, p.ClientKeyFile, p.ClientCert = issue(3, name+" client", x509.ExtKeyUsageClientAuth, "client.pem", "client-key.pem")
	return p
}

// ClientTLS is a client's TLS configuration trusting the CA, with the
// client certificate when withCert.
func (p *PKI) ClientTLS(withCert bool) *tls.Config {
	cfg := &tls.Config{RootCAs: p.Pool, MinVersion: tls.VersionTLS12}
	if withCert {
		cfg.Certificates = []tls.Certificate{p.ClientCert}
	}
	return cfg
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func writePEM(tb testing.TB, dir, name, kind string, der []byte) string {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Token is a token and the line of a token file that names it.
type Token struct {
	Name, Token string
	Scopes      auth.Scope
	Limits      auth.Limits
}

// WriteTokens makes a token for each of ts (setting its Token) and writes
// their lines to a token file in a temporary directory of tb, returning
// its path.
func WriteTokens(tb testing.TB, ts ...*Token) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "tokens")
	RewriteTokens(tb, path, ts...)
	return path
}

// RewriteTokens writes the lines of ts to path, making a token for each of
// ts that has none.
func RewriteTokens(tb testing.TB, path string, ts ...*Token) {
	tb.Helper()
	var b strings.Builder
	for _, t := range ts {
		if t.Token == "" {
			t.Token = auth.NewToken()
		}
		b.WriteString(auth.Line(t.Name, t.Token, t.Scopes, t.Limits) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
}
