package projectfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/kiln-dev/kiln/internal/definition"
)

// secretMaxBytes bounds a secret read from a file: a password or token, not
// a whole file read by mistake.
const secretMaxBytes = 64 << 10

// secret reads a credential: {env: NAME} (an environment variable) or
// {file: path} (a file, relative to the project file's directory, its
// trailing newline dropped). A credential is never written in the file as
// plain text; one that is is refused without being repeated. example names
// the variable to suggest. The value is read now, so that a missing one is
// reported with its line when the file is loaded.
func (l *loader) secret(e keyValue, what, example string) (definition.Secret, bool) {
	advice := fmt.Sprintf("write %s: {env: %s} to read it from an environment variable, or %s: {file: /run/secrets/%s} to read it from a file",
		e.key, example, e.key, strings.ToLower(example))
	if isNull(e.val) {
		l.errorf(e.kpos, "%s is empty: %s", what, advice)
		return definition.Secret{}, false
	}
	entries, isMap := l.secretMapping(e)
	if !isMap {
		// Never repeat the value: it may be the secret itself.
		l.errorf(e.kpos, "%s is written in the project file: a secret never is (project files are shared and committed); %s", what, advice)
		return definition.Secret{}, false
	}
	if len(entries) != 1 || entries[0].key != "env" && entries[0].key != "file" {
		l.errorf(e.kpos, "%s: write exactly one of env: or file:, like %s: {env: %s}", what, e.key, example)
		return definition.Secret{}, false
	}
	src := entries[0]
	name, np, ok := l.scalar(src.val, src.kpos, src.key+" of "+what, example)
	if !ok {
		return definition.Secret{}, false
	}
	if src.key == "env" {
		v, set := os.LookupEnv(name)
		switch {
		case !set:
			l.errorf(np, "%s: the environment variable %s is not set: set it in the environment kiln runs in, or read %s from a file with {file: path}", what, clip(name), e.key)
			return definition.Secret{}, false
		case v == "":
			l.errorf(np, "%s: the environment variable %s is empty: set it to the %s", what, clip(name), e.key)
			return definition.Secret{}, false
		}
		return definition.NewSecret(v, "env "+name), true
	}
	path := l.relativeToFile(name)
	f, err := os.Open(path)
	if err != nil {
		l.errorf(np, "%s: cannot read the file: %v: check the path (relative paths are from the project file's directory) and that kiln may read it", what, err)
		return definition.Secret{}, false
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, secretMaxBytes+1))
	if err != nil {
		l.errorf(np, "%s: cannot read the file %s: %v", what, clip(name), err)
		return definition.Secret{}, false
	}
	if len(buf) > secretMaxBytes {
		l.errorf(np, "%s: the file %s is more than %d bytes: it should hold only the %s", what, clip(name), secretMaxBytes, e.key)
		return definition.Secret{}, false
	}
	v := strings.TrimRight(string(buf), "\r\n")
	if v == "" {
		l.errorf(np, "%s: the file %s is empty: write the %s in it", what, clip(name), e.key)
		return definition.Secret{}, false
	}
	return definition.NewSecret(v, "file "+path), true
}

// secretMapping returns the entries of a secret's {env: ...} or {file: ...}
// mapping, or false when the value is not a mapping (without reporting,
// so that the value is never shown).
func (l *loader) secretMapping(e keyValue) ([]keyValue, bool) {
	if !isMapping(e.val) {
		return nil, false
	}
	entries, ok := l.mapping(e.val, e.kpos, e.key, "{env: NAME}")
	return entries, ok
}

// isMapping reports whether n is a YAML mapping.
func isMapping(n ast.Node) bool {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return true
	}
	return false
}

// relativeToFile returns path, relative to the project file's directory when it
// is not absolute.
func (l *loader) relativeToFile(path string) string {
	if filepath.IsAbs(path) || l.file == "" {
		return path
	}
	return filepath.Join(filepath.Dir(l.file), path)
}

// tlsBlock reads tls: true, or a mapping of ca_file, cert_file, key_file,
// server_name and insecure_skip_verify; false or no tls is plain TCP. The
// files are read now, so that a missing or malformed one is reported with
// its line.
func (l *loader) tlsBlock(e keyValue, what string) *definition.TLS {
	const example = "{ca_file: ca.pem}"
	if !isMapping(e.val) && !isNull(e.val) {
		text, tp, ok := l.scalar(e.val, e.kpos, "tls of "+what, "true")
		if !ok {
			return nil
		}
		switch text {
		case "true":
			return &definition.TLS{}
		case "false":
			return nil
		}
		l.errorf(tp, "tls %q of %s: write true (trusting the system's certificate authorities), false, or a mapping like tls: %s", clip(text), what, example)
		return nil
	}
	entries, ok := l.mapping(e.val, e.kpos, "tls of "+what, example)
	if !ok {
		return nil
	}
	m := l.keys(entries, "tls of "+what, "ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify")
	t := &definition.TLS{}
	for _, f := range []struct {
		key string
		dst *string
	}{{"ca_file", &t.CAFile}, {"cert_file", &t.CertFile}, {"key_file", &t.KeyFile}} {
		if fe, ok := m[f.key]; ok {
			if p, _, ok := l.scalar(fe.val, fe.kpos, f.key+" of the tls of "+what, f.key[:strings.IndexByte(f.key, '_')]+".pem"); ok {
				*f.dst = l.relativeToFile(p)
			}
		}
	}
	if se, ok := m["server_name"]; ok {
		if s, _, ok := l.scalar(se.val, se.kpos, "server_name of the tls of "+what, "redis.example.com"); ok {
			t.ServerName = s
		}
	}
	if ie, ok := m["insecure_skip_verify"]; ok {
		if s, sp, ok := l.scalar(ie.val, ie.kpos, "insecure_skip_verify of the tls of "+what, "false"); ok {
			switch s {
			case "true":
				t.InsecureSkipVerify = true
			case "false":
			default:
				l.errorf(sp, "insecure_skip_verify %q of the tls of %s: write true or false", clip(s), what)
			}
		}
	}
	if _, err := t.Config(); err != nil {
		l.errorf(e.kpos, "tls of %s: %v", what, err)
		return nil
	}
	return t
}
