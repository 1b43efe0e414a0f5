// Package authtest makes what tests of authentication need: a CA with a
// server certificate for the loopback addresses and a client certificate,
// written as PEM files, and token files with fresh tokens.
package authtest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/auth"
	"github.com/kiln-dev/kiln/internal/tlstest"
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
// directory of tb (package tlstest). name tells two PKIs apart in their
// subjects.
func NewPKI(tb testing.TB, name string) *PKI {
	tb.Helper()
	c := tlstest.NewNamed(tb, name)
	p := &PKI{CAFile: c.CAFile, CertFile: c.ServerCert, KeyFile: c.ServerKey,
		ClientCertFile: c.ClientCert, ClientKeyFile: c.ClientKey, Pool: c.Pool()}
	var err error
	if p.ClientCert, err = tls.LoadX509KeyPair(c.ClientCert, c.ClientKey); err != nil {
		tb.Fatal(err)
	}
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
