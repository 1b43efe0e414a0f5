package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/auth"
	"github.com/kiln-dev/kiln/internal/auth/authtest"
	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

const importProject = `project: imp
entities: {user: {keys: [user_id]}}
sources:
  clicks:
    type: push
    event_time: ts
    fields: {user_id: int64, kind: string}
  other:
    type: push
    event_time: ts
    fields: {user_id: int64}
views:
  by_user:
    entity: user
    source: clicks
    features:
      n: {agg: count, windows: [30d]}
`

// kiln import offline into a data directory: a glob of files, a summary;
// again, the same counts in the archive; refused while the directory is in
// use; usage errors for a missing source and a pattern matching nothing.
func TestImportCommand(t *testing.T) {
	dir := t.TempDir()
	proj := filepath.Join(dir, "kiln.yaml")
	if err := os.WriteFile(proj, []byte(importProject), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := time.Now().Add(-time.Hour).UnixMilli()
	for i, name := range []string{"a.csv", "b.jsonl"} {
		var b strings.Builder
		if name == "a.csv" {
			b.WriteString("user_id,kind,ts\n")
		}
		for j := range 100 {
			if name == "a.csv" {
				fmt.Fprintf(&b, "%d,view,%d\n", j%5, ts+int64(i*100+j))
			} else {
				fmt.Fprintf(&b, `{"user_id": %d, "kind": "like", "ts": %d}`+"\n", j%5, ts+int64(i*100+j))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	args := []string{"import", "-c", proj, "--source", "clicks", "--data", data, filepath.Join(dir, "a.csv"), filepath.Join(dir, "*.jsonl")}
	for range 2 {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, &out, &errb); err != nil {
			t.Fatalf("import: %v\n%s", err, errb.String())
		}
		if !strings.Contains(out.String(), "kiln import: 200 rows of 2 files into "+data) {
			t.Errorf("summary: %s", out.String())
		}
	}
	p, err := projectfile.Load(proj)
	if err != nil {
		t.Fatal(err)
	}
	arch, _, err := node.OpenArchive(context.Background(), "", p, data)
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		n := 0
		if err := arch.Scan(context.Background(), p.Source("clicks"), time.UnixMilli(0), time.Now(), func(archive.Archived) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 200 {
		t.Errorf("the archive holds %d events after importing 200 rows twice, want 200", n)
	}

	// A server holds the directory: the import says what to do, and with
	// --url goes through the server, which passes over what it holds; over
	// TLS, with the push token of KILN_TOKEN.
	pki := authtest.NewPKI(t, "kiln")
	certs, err := auth.LoadCerts(pki.CertFile, pki.KeyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	pusher := &authtest.Token{Name: "importer", Scopes: auth.Push}
	tokens, err := auth.Load(authtest.WriteTokens(t, pusher))
	if err != nil {
		t.Fatal(err)
	}
	nd, err := node.Start(node.Config{Project: p, DataDir: data, Addr: "127.0.0.1:0", Archive: arch, TLS: certs.Config(), Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), args, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "import over its API with --url") {
		t.Errorf("import while a server runs: %v", err)
	}
	more := filepath.Join(dir, "more.csv")
	if err := os.WriteFile(more, []byte(fmt.Sprintf("user_id,kind,ts\n9,view,%d\n9,view,%d\n", ts, ts+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	online := []string{"import", "-c", proj, "--source", "clicks", "--url", nd.URL(), "--ca-file", pki.CAFile, filepath.Join(dir, "a.csv"), more}
	if err := run(context.Background(), online, &out, io.Discard); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("import --url without a token: %v", err)
	}
	t.Setenv("KILN_TOKEN", pusher.Token)
	if err := run(context.Background(), online, &out, io.Discard); err != nil {
		t.Fatalf("import --url: %v", err)
	}
	if !strings.Contains(out.String(), "102 rows of 2 files into "+nd.URL()) {
		t.Errorf("summary: %s", out.String())
	}
	if err := nd.Close(); err != nil {
		t.Fatal(err)
	}

	if n := count(); n != 202 {
		t.Errorf("the archive holds %d events after importing a.csv again and 2 more rows over the API, want 202", n)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"import", "-c", proj, "--data", data, filepath.Join(dir, "a.csv")}, "say which source the files hold with --source (one of clicks, other)"},
		{[]string{"import", "-c", proj, "--source", "clicks", "--data", data, filepath.Join(dir, "*.parquet")}, `no file matches`},
		{[]string{"import", "-c", proj, "--source", "click", "--data", data, filepath.Join(dir, "a.csv")}, `has no source "click"`},
		{[]string{"import", "-c", proj, "--source", "clicks", "--data", data}, "name the files to import"},
	} {
		err := run(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error saying %q", tc.args[1:], err, tc.want)
		}
		if strings.Contains(tc.want, "--source") && !errors.Is(err, cli.ErrUsage) {
			t.Errorf("%v: %v is not a usage error", tc.args[1:], err)
		}
	}
}
