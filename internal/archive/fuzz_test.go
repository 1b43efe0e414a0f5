package archive

import (
	"testing"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// FuzzReadFile feeds arbitrary bytes to ReadFile as a file of two sources
// (the one it was written for and one with a retyped and an added field):
// it must return an error or events that fit the source, never panic.
func FuzzReadFile(f *testing.F) {
	src := testSource()
	fs, err := newFileSchema(src)
	if err != nil {
		f.Fatal(err)
	}
	valid, err := fs.encode(src.Name, []Archived{ev(day0, "t/0", 1, 1), ev(day0, "", 2, 2)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(valid[len(valid)/2:])
	f.Add([]byte{})
	f.Add([]byte("PAR1PAR1"))
	f.Add([]byte("PAR1\x00\x00\x00\x00PAR1"))
	other := &definition.Source{Name: "clicks", Fields: []definition.Field{
		{Name: "user", Type: event.String}, {Name: "added", Type: event.Bool},
	}}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		for _, s := range []*definition.Source{src, other} {
			evs, err := ReadFile(s, "fuzz.parquet", data)
			if err != nil {
				continue
			}
			for _, e := range evs {
				if err := checkEvent(s, &e); err != nil {
					t.Fatalf("ReadFile returned an event no Append takes: %v", err)
				}
			}
		}
	})
}
