package archive

import (
	"context"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
)

// Dates returns the dates of src that hold archived files, ascending, each
// as midnight UTC: the days Scan would read. A rebuild counts its progress
// in them, and the first says how far back the archive reaches.
func (a *Archive) Dates(ctx context.Context, src *definition.Source) ([]time.Time, error) {
	if err := checkSource(src); err != nil {
		return nil, err
	}
	names, err := a.dates(ctx, src.Name)
	if err != nil {
		return nil, err
	}
	out := make([]time.Time, 0, len(names))
	for _, d := range names {
		t, err := time.Parse(dateLayout, d)
		if err != nil {
			continue // dates only lists names that parse
		}
		out = append(out, t)
	}
	return out, nil
}
