package kafka

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kiln-dev/kiln/internal/definition"
)

// accessOpts returns the client options that reach the source's brokers:
// its seed brokers, TLS and SASL authentication.
func accessOpts(st *definition.Stream, log *slog.Logger) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(st.Brokers...)}
	if st.TLS != nil {
		cfg, err := st.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		if cfg.InsecureSkipVerify {
			log.Warn("kafka: TLS without verifying the brokers' certificates (insecure_skip_verify): the connections are encrypted, but anyone on the path can pose as the brokers")
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if s := st.SASL; s != nil {
		switch s.Mechanism {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: s.User, Pass: s.Password.Reveal()}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: s.User, Pass: s.Password.Reveal()}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: s.User, Pass: s.Password.Reveal()}.AsSha512Mechanism()))
		default:
			return nil, fmt.Errorf("unknown SASL mechanism %q (allowed: %s)", s.Mechanism, definition.SASLMechanisms)
		}
	}
	return opts, nil
}

// accessError explains err when it means the brokers refused the client's
// credentials or TLS: what to check, in the source's configuration. It
// returns nil for other errors.
func accessError(err error) error {
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("the brokers refused the SASL credentials: check mechanism, user and password of the source's sasl: %w", err)
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Errorf("the brokers do not offer this SASL mechanism: set mechanism of the source's sasl to one they enable: %w", err)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.GroupAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("the brokers' ACLs do not let the SASL user read the topic or join the group: grant it Read on both: %w", err)
	}
	if hint := definition.TLSHint(err, "the source's tls"); hint != "" {
		return fmt.Errorf("%s: %w", hint, err)
	}
	return nil
}

// hangUpHint says what to check when the brokers closed the connection
// while the client was setting it up, or "". Brokers that refuse SASL
// credentials answer SASL_AUTHENTICATION_FAILED (accessError explains it),
// but some just hang up; and a TLS listener hangs up on a plain client.
func hangUpHint(st *definition.Stream, err error) string {
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
		return ""
	}
	switch {
	case st.SASL != nil && st.TLS == nil:
		return " (the brokers hung up: check mechanism, user and password of the source's sasl, and add tls to the source if the brokers expect TLS)"
	case st.SASL != nil:
		return " (the brokers hung up: check mechanism, user and password of the source's sasl)"
	case st.TLS == nil:
		return " (the brokers hung up: if they expect TLS, add tls to the source; if they expect SASL, add sasl)"
	}
	return " (the brokers hung up: if they expect SASL, add sasl to the source)"
}
