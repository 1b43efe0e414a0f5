package client_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/auth"
	"github.com/kiln-dev/kiln/internal/auth/authtest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

// The client reads from a node that asks for mutual TLS and a token, with
// its CA, certificate and token from Options; a wrong token is refused as
// UNAUTHENTICATED, and so is none.
func TestTokenAndMutualTLS(t *testing.T) {
	pki := authtest.NewPKI(t, "kiln")
	reader := &authtest.Token{Name: "reader", Scopes: auth.Read}
	tokens, err := auth.Load(authtest.WriteTokens(t, reader))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := auth.LoadCerts(pki.CertFile, pki.KeyFile, pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(node.Config{Project: p, DataDir: t.TempDir(), Addr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", Tokens: tokens, TLS: certs.Config()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	tlsCfg, err := client.LoadTLS(client.TLSFiles{CA: pki.CAFile, Cert: pki.ClientCertFile, Key: pki.ClientKeyFile})
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string) error {
		c, err := client.New(context.Background(), client.Options{Addrs: []string{n.GRPCAddr}, Token: token, TLS: tlsCfg, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		resp, err := c.Get(context.Background(), userReq(1, 2))
		if err == nil && resp.Entity("user").Len() != 2 {
			t.Errorf("%d users in the answer, want 2", resp.Entity("user").Len())
		}
		return err
	}
	if err := get(reader.Token); err != nil {
		t.Fatalf("with TLS, a client certificate and a token: %v", err)
	}
	if err := get("kiln_wrong"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a wrong token: %v", err)
	}
	if err := get(""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v", err)
	}
	if _, err := client.LoadTLS(client.TLSFiles{Cert: pki.ClientCertFile}); err == nil {
		t.Error("LoadTLS took a certificate without its key")
	}
}
