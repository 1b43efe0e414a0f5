package auth

import (
	"strings"
	"testing"
)

// FuzzParse: any text parses to tokens or is refused with the line named;
// nothing panics, and what parses has valid names and scopes.
func FuzzParse(f *testing.F) {
	f.Add([]byte("a sha256:" + strings.Repeat("ab", 32) + " read,push read_rps=10\n"))
	f.Add([]byte("default read_rps=1 push_rps=2\n# comment\n\nb sha256:" + strings.Repeat("0", 64) + " admin\n"))
	f.Add([]byte("c kiln_abc read\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		if len(text) > MaxFileBytes {
			return
		}
		entries, err := parse(text)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		for _, e := range entries {
			if !validName(e.name) || e.scopes == 0 || e.scopes&^(Read|Push|Admin) != 0 || e.limits.ReadRPS < 0 || e.limits.PushRPS < 0 {
				t.Fatalf("parsed a bad entry %+v", e)
			}
		}
	})
}
