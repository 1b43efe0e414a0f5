package definition

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Secret is a credential (a password, a token) read when the project file
// was loaded, from the environment variable or file the project file names;
// a project file never holds one as plain text. Printing a Secret in any
// way (fmt, slog, JSON) shows only where it came from, never its value:
// Reveal is the one way to read it, for the client that sends it.
type Secret struct {
	value string
	from  string // "env REDIS_PASSWORD" or "file /run/secrets/redis"
}

// NewSecret returns the secret value, read from from (which says where, for
// messages: "env REDIS_PASSWORD").
func NewSecret(value, from string) Secret { return Secret{value: value, from: from} }

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return s.value }

// IsSet reports whether the project file gave the secret.
func (s Secret) IsSet() bool { return s.from != "" }

// String says where the secret came from, without its value.
func (s Secret) String() string {
	if s.from == "" {
		return "(none)"
	}
	return "secret from " + s.from
}

// GoString is String, so %#v does not print the value either.
func (s Secret) GoString() string { return s.String() }

// Format prints String for every verb, so no verb prints the value.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// LogValue is String, for slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText is String, for JSON.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// TLS configures TLS towards a backend (Redis, Kafka, NATS). A nil *TLS
// means plain TCP.
type TLS struct {
	// CAFile is a PEM file of the certificate authorities to trust; empty
	// trusts the system's.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// servers that ask for one; both or neither.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must carry; empty
	// means the host of the address dialled.
	ServerName string
	// InsecureSkipVerify accepts any server certificate: the connection is
	// encrypted but not authenticated. For tests only; Kiln warns at start.
	InsecureSkipVerify bool
}

// Config reads the files t names and returns the *tls.Config to dial with.
// Its errors name the file and what is wrong with it.
func (t *TLS) Config() (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // the user asked for it, and is warned
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate: give the PEM file of the certificate authority that signed the server's certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file %s and key_file %s: %w", t.CertFile, t.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case t.CertFile != "" || t.KeyFile != "":
		return nil, errors.New("a client certificate needs both cert_file and key_file")
	}
	return cfg, nil
}

// TLSHint says what to check when err is a failed TLS handshake: which key
// of the tls block where names ("tls of online_store", "the source's
// tls"). It returns "" for other errors.
func TLSHint(err error, where string) string {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var verify *tls.CertificateVerificationError
	var header tls.RecordHeaderError
	switch {
	case errors.As(err, &hostname):
		return "the server's certificate is not for the name dialled: set server_name in " + where + " to a name the certificate carries"
	case errors.As(err, &unknownCA), errors.As(err, &verify):
		return "the server's certificate is not signed by a trusted authority: set ca_file in " + where + " to the PEM file of the authority that signed it"
	case errors.As(err, &header):
		return "the server does not speak TLS at this address: give its TLS port, or remove " + where
	}
	return ""
}

// Durability says when the Redis store acknowledges a write.
type Durability uint8

const (
	// DurabilityPrimary (the default) acknowledges a write once the master
	// applied it; Redis replicates asynchronously, so a master that dies
	// before its replica received the write loses it.
	DurabilityPrimary Durability = iota
	// DurabilityReplicated acknowledges a write only once WAIT confirmed
	// it on OnlineStore.Replicas replicas.
	DurabilityReplicated
)

var durabilityNames = [...]string{DurabilityPrimary: "primary", DurabilityReplicated: "replicated"}

// Durabilities lists the durabilities a project file may use.
const Durabilities = "primary, replicated"

// ParseDurability returns the Durability a project file names s.
func ParseDurability(s string) (Durability, bool) {
	return parseName[Durability](s, durabilityNames[:])
}

// String returns the word a project file uses for d.
func (d Durability) String() string { return nameOf(d, durabilityNames[:], "durability?") }

// MarshalText encodes d as its String.
func (d Durability) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default replication settings of OnlineStore with DurabilityReplicated.
const (
	DefaultReplicas           = 1
	DefaultReplicationTimeout = time.Second
)

// SASL is how a Kafka client authenticates.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string
	User      string
	Password  Secret
}

// SASLMechanisms lists the SASL mechanisms a Kafka source may use.
const SASLMechanisms = "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"

// NATSAuth is how a NATS client authenticates: at most one of a
// credentials file (a JWT and an nkey seed, as nsc writes them), a user
// and password, or a token.
type NATSAuth struct {
	// Credentials is the path of a .creds file.
	Credentials string
	User        string
	Password    Secret
	Token       Secret
}
