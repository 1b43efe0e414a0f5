package nats

import (
	"errors"
	"fmt"
	"log/slog"

	natsgo "github.com/nats-io/nats.go"

	"github.com/kiln-dev/kiln/internal/definition"
)

// accessOpts returns the connection options that authenticate to the
// source's server and encrypt the connection: a credentials file, a user
// and password, or a token, and TLS.
func accessOpts(st *definition.Stream, log *slog.Logger) ([]natsgo.Option, error) {
	var opts []natsgo.Option
	a := st.NATSAuth
	switch {
	case a.Credentials != "":
		opts = append(opts, natsgo.UserCredentials(a.Credentials))
	case a.User != "":
		opts = append(opts, natsgo.UserInfo(a.User, a.Password.Reveal()))
	case a.Token.IsSet():
		opts = append(opts, natsgo.Token(a.Token.Reveal()))
	}
	if st.TLS != nil {
		cfg, err := st.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		if cfg.InsecureSkipVerify {
			log.Warn("nats: TLS without verifying the server's certificate (insecure_skip_verify): the connection is encrypted, but anyone on the path can pose as the server")
		}
		opts = append(opts, natsgo.Secure(cfg))
	}
	return opts, nil
}

// connectError explains why connecting failed when the server refused the
// client's credentials or TLS: what to check in the source.
func connectError(st *definition.Stream, err error) error {
	hint := definition.TLSHint(err, "the source's tls")
	switch {
	case errors.Is(err, natsgo.ErrAuthorization), errors.Is(err, natsgo.ErrAuthExpired), errors.Is(err, natsgo.ErrAuthRevoked):
		hint = "the server refused the credentials: check credentials, user and password, or token of the source"
	case errors.Is(err, natsgo.ErrSecureConnRequired):
		hint = "the server requires TLS: add tls to the source"
	case errors.Is(err, natsgo.ErrSecureConnWanted):
		hint = "the server does not offer TLS: remove tls from the source, or enable TLS on the server"
	case hint != "" && st.TLS == nil:
		// nats.go turns TLS on by itself when the server requires it, and
		// then trusts the system's authorities.
		hint = "the server requires TLS: add tls to the source, with ca_file naming the authority that signed its certificate"
	}
	if hint != "" {
		return fmt.Errorf("connecting to %s: %s: %w", redact(st.URL), hint, err)
	}
	return fmt.Errorf("connecting to %s: %w", redact(st.URL), err)
}
