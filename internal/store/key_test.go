package store

import "testing"

// KeyHash is XXH64 with seed 0: the values are pinned, since a change would
// route rows to other partitions than the ones whose event logs hold them,
// and misplace them in the read cache.
func TestKeyHashIsPinned(t *testing.T) {
	for _, c := range []struct {
		key  string
		want uint64
	}{
		{"", 0xef46db3751d8e999},
		{"a", 0xd24ec4f1a98c6e5b},
		{"kiln", 0x655284c27d11b7ba},
		{"by_user\x00\x02\x80\x00\x00\x00\x00\x00\x00\x01", 0xfb7f234924398592},
	} {
		if got := KeyHash([]byte(c.key)); got != c.want {
			t.Errorf("KeyHash(%q) = %#x, want %#x", c.key, got, c.want)
		}
	}
	key := []byte("by_user\x00\x02\x80\x00\x00\x00\x00\x00\x00\x01")
	if n := testing.AllocsPerRun(100, func() { KeyHash(key) }); n != 0 {
		t.Errorf("KeyHash allocates %v times", n)
	}
}

func TestReserved(t *testing.T) {
	for key, want := range map[string]bool{
		"": false, "\x00": true, "\x00kiln-log\x00": true, "a\x00": false, "by_user\x00\x02": false,
	} {
		if got := Reserved([]byte(key)); got != want {
			t.Errorf("Reserved(%q) = %v, want %v", key, got, want)
		}
	}
}
