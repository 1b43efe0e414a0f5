package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/internal/auth"
	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/node"
)

// serveSecurity are kiln serve's flags of tokens, TLS and HTTP timeouts.
type serveSecurity struct {
	tokenFile, tlsCert, tlsKey, clientCA *string
	timeouts                             node.HTTPTimeouts
}

func securityFlags(fs *flag.FlagSet) *serveSecurity {
	s := &serveSecurity{
		tokenFile: fs.String("token-file", "", "file of the bearer tokens (their hashes, scopes and rate limits) every request but /healthz and /readyz must carry; kiln token makes them (default: none asked; docs/security.md)"),
		tlsCert:   fs.String("tls-cert", "", "certificate (PEM) to serve HTTP and gRPC over TLS with, with --tls-key"),
		tlsKey:    fs.String("tls-key", "", "private key (PEM) of --tls-cert"),
		clientCA:  fs.String("client-ca", "", "CA certificates (PEM) a client's certificate must chain to: mutual TLS (needs --tls-cert)"),
	}
	fs.DurationVar(&s.timeouts.ReadHeader, "http-read-header-timeout", node.DefaultReadHeaderTimeout, "longest time a client may take to send a request's headers (negative: no limit)")
	fs.DurationVar(&s.timeouts.Read, "http-read-timeout", node.DefaultReadTimeout, "longest time a client may take to send a whole request, body included (negative: no limit)")
	fs.DurationVar(&s.timeouts.Write, "http-write-timeout", node.DefaultWriteTimeout, "longest time from the end of a request's headers to the end of its answer, training sets included (negative: no limit)")
	fs.DurationVar(&s.timeouts.Idle, "http-idle-timeout", node.DefaultIdleTimeout, "longest time a keep-alive connection waits for its next request (negative: no limit)")
	return s
}

// security is what the flags loaded: nil fields for what is off.
type security struct {
	tokenFile string
	tokens    *auth.Tokens
	certs     *auth.Certs
}

// load reads the token file and the certificates the flags name, and
// warns when the APIs listen beyond loopback without tokens.
func (f *serveSecurity) load(logger *slog.Logger, addrs ...string) (*security, error) {
	s := &security{tokenFile: *f.tokenFile}
	if *f.tokenFile != "" {
		var err error
		if s.tokens, err = auth.Load(*f.tokenFile); err != nil {
			return nil, fmt.Errorf("%w (fix the file, or make its lines with kiln token)", err)
		}
		logger.Info("bearer tokens required", "file", *f.tokenFile, "tokens", s.tokens.Len())
	} else {
		for _, a := range addrs {
			if a != "" && !loopback(a) {
				logger.Warn("listening beyond loopback without --token-file: anyone who reaches this address can read and push; see docs/security.md", "addr", a)
			}
		}
	}
	switch {
	case *f.tlsCert != "" || *f.tlsKey != "":
		var err error
		if s.certs, err = auth.LoadCerts(*f.tlsCert, *f.tlsKey, *f.clientCA); err != nil {
			return nil, err
		}
		logger.Info("TLS", "cert", *f.tlsCert, "mutual", s.certs.MutualTLS())
	case *f.clientCA != "":
		return nil, fmt.Errorf("%w: --client-ca needs --tls-cert and --tls-key: mutual TLS is TLS first", cli.ErrUsage)
	}
	for _, d := range []time.Duration{f.timeouts.ReadHeader, f.timeouts.Read, f.timeouts.Write, f.timeouts.Idle} {
		if d == 0 {
			return nil, fmt.Errorf("%w: an --http-*-timeout is 0: give a duration like 30s, or a negative one for no limit", cli.ErrUsage)
		}
	}
	return s, nil
}

func (s *security) tlsConfig() *tls.Config {
	if s.certs == nil {
		return nil
	}
	return s.certs.Config()
}

// reloadOnHangup reads the token file and the certificates again on each
// SIGHUP until ctx ends; what fails to load leaves what is in force, and
// the log says why.
func (s *security) reloadOnHangup(ctx context.Context, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			if s.tokens != nil {
				if n, err := s.tokens.Reload(); err != nil {
					logger.Error("token file not reloaded: the tokens in force stay", "err", err, "tokens", n)
				} else {
					logger.Info("token file reloaded", "file", s.tokenFile, "tokens", n)
				}
			}
			if s.certs != nil {
				if err := s.certs.Reload(); err != nil {
					logger.Error("TLS certificates not reloaded: the ones in force stay", "err", err)
				} else {
					logger.Info("TLS certificates reloaded")
				}
			}
		}
	}()
}

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kiln token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cli.SetUsage(fs, "kiln token: make a bearer token for kiln serve --token-file",
		`usage: kiln token --name NAME --scopes read[,push,admin] [--read-rps N] [--push-rps N]

Prints a new random token once, and the line to add to the token file,
which keeps only the token's hash. Give the token to its client; it cannot
be printed again. Send SIGHUP to kiln serve to take the new line.
Scopes: read (features, metadata, training sets), push (events), admin
(/debug/ and gRPC Diagnostics). docs/security.md has the file's format.
`)
	name := fs.String("name", "", "the token's name in the file and the server's log (letters, digits, '.', '_', '-')")
	scopes := fs.String("scopes", "read", "what the token may do: read, push, admin, separated by commas")
	readRPS := fs.Float64("read-rps", 0, "the token's read requests per second (0: the file's default, or no limit)")
	pushRPS := fs.Float64("push-rps", 0, "the token's push requests per second (0: the file's default, or no limit)")
	if err := cli.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *name == "" {
		return fmt.Errorf("%w: give the token a --name (who or what uses it)", cli.ErrUsage)
	}
	if err := auth.CheckName(*name); err != nil {
		return fmt.Errorf("%w: --name: %v", cli.ErrUsage, err)
	}
	sc, err := auth.ParseScopes(*scopes)
	if err != nil {
		return fmt.Errorf("%w: --scopes: %v", cli.ErrUsage, err)
	}
	if *readRPS < 0 || *pushRPS < 0 {
		return fmt.Errorf("%w: --read-rps and --push-rps are requests per second, 0 or more", cli.ErrUsage)
	}
	token := auth.NewToken()
	line := auth.Line(*name, token, sc, auth.Limits{ReadRPS: *readRPS, PushRPS: *pushRPS})
	fmt.Fprintf(stdout, "token (shown once: give it to its client, keep it secret):\n%s\n\nline for the token file:\n%s\n", token, line)
	return nil
}
