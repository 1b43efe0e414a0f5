package node

import (
	"encoding/json"
	"testing"
)

func TestParseRole(t *testing.T) {
	for _, tc := range []struct {
		flag string
		want Role
	}{{"", RoleAll}, {"all", RoleAll}, {"ingest", RoleIngest}, {"serve", RoleServe}} {
		r, err := ParseRole(tc.flag)
		if err != nil || r != tc.want {
			t.Errorf("ParseRole(%q) = %v, %v; want %v", tc.flag, r, err, tc.want)
		}
		if tc.flag != "" && r.String() != tc.flag {
			t.Errorf("role %q prints as %q", tc.flag, r.String())
		}
	}
	const want = `unknown role "both": use all, ingest or serve`
	if _, err := ParseRole("both"); err == nil || err.Error() != want {
		t.Errorf("ParseRole(both): %v, want %s", err, want)
	}
	// The stats show the role by name.
	b, err := json.Marshal(map[string]any{"role": RoleServe})
	if err != nil || string(b) != `{"role":"serve"}` {
		t.Errorf("stats role %s, %v", b, err)
	}
}
