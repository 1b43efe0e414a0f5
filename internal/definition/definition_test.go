package definition_test

import (
	"encoding/json"
	"testing"

	"github.com/kiln-dev/kiln/internal/definition"
)

// TestTypeWords checks that source and store types print, parse and
// marshal as the words a project file uses.
func TestTypeWords(t *testing.T) {
	for word, want := range map[string]definition.SourceType{"push": definition.Push, "kafka": definition.Kafka, "nats": definition.NATS} {
		got, ok := definition.ParseSourceType(word)
		if !ok || got != want || got.String() != word {
			t.Errorf("source type %q: parsed %v, %v", word, got, ok)
		}
	}
	for word, want := range map[string]definition.StoreType{"pebble": definition.Pebble, "redis": definition.Redis} {
		got, ok := definition.ParseStoreType(word)
		if !ok || got != want || got.String() != word {
			t.Errorf("store type %q: parsed %v, %v", word, got, ok)
		}
	}
	for _, word := range []string{"", "Push", "http", "agg?"} {
		if _, ok := definition.ParseSourceType(word); ok {
			t.Errorf("ParseSourceType(%q) accepted it", word)
		}
		if _, ok := definition.ParseStoreType(word); ok {
			t.Errorf("ParseStoreType(%q) accepted it", word)
		}
	}
	b, err := json.Marshal(map[string]any{"online_store": definition.Redis, "type": definition.Kafka})
	if err != nil || string(b) != `{"online_store":"redis","type":"kafka"}` {
		t.Errorf("JSON %s, %v", b, err)
	}
	if got := definition.Count.String() + " " + definition.Last.String(); got != "count last" {
		t.Errorf("aggregations print as %q", got)
	}
}
