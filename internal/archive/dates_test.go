package archive

import (
	"context"
	"reflect"
	"testing"
	"time"
)

func TestDates(t *testing.T) {
	ctx := context.Background()
	a := New(NewMem())
	src := testSource()
	if ds, err := a.Dates(ctx, src); err != nil || len(ds) != 0 {
		t.Fatalf("empty archive: %v %v", ds, err)
	}
	evs := []Archived{ev(day0.Add(50*time.Hour), "s", 1, 1), ev(day0.Add(time.Hour), "s", 2, 1), ev(day0.Add(2*time.Hour), "s", 3, 2)}
	if err := a.Append(ctx, src, "b1", evs); err != nil {
		t.Fatal(err)
	}
	ds, err := a.Dates(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if want := []time.Time{day0, day0.Add(48 * time.Hour)}; !reflect.DeepEqual(ds, want) {
		t.Fatalf("dates %v, want %v", ds, want)
	}
}
