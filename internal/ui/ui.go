// Package ui owns the dashboard page the admin listener serves at /ui: one
// HTML page, its script and its style sheet, embedded in the binary. The
// page shows the project (GET /v1/metadata), live charts computed in the
// browser from two scrapes of GET /metrics at a time, and an entity lookup
// (POST /v1/features); it keeps nothing on the server and fetches nothing
// from anywhere but the listener that served it.
//
// Package serve mounts Page at GET /ui and Asset at GET /ui/{file}, and
// the read-only routes the page calls beside them.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"
)

//go:embed static
var static embed.FS

// file is one embedded file, read once.
type file struct {
	name, contentType, etag string
	body                    []byte
}

// files are the embedded files by name; index.html is the page.
var files = func() map[string]*file {
	m := map[string]*file{}
	entries, err := fs.ReadDir(static, "static")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	for _, e := range entries {
		b, err := static.ReadFile("static/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(b)
		m[e.Name()] = &file{
			name:        e.Name(),
			contentType: mime.TypeByExtension(path.Ext(e.Name())),
			etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
			body:        b,
		}
	}
	return m
}()

// securityPolicy lets the page load its own files and call its own
// listener, and nothing else: no inline script, no other origin, no frame.
const securityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Page serves the page (GET /ui).
func Page(w http.ResponseWriter, r *http.Request) { serve(w, r, files["index.html"]) }

// Asset serves the page's script or style sheet called name (GET
// /ui/{file}), and reports false, writing nothing, if there is no such
// file.
func Asset(w http.ResponseWriter, r *http.Request, name string) bool {
	f := files[name]
	if f == nil || name == "index.html" {
		return false
	}
	serve(w, r, f)
	return true
}

func serve(w http.ResponseWriter, r *http.Request, f *file) {
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Security-Policy", securityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// Revalidated on each load (the ETag answers 304), so a new binary's
	// page is never mixed with an old script.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}
