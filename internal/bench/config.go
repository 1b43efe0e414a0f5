package bench

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// ErrConfig marks an error in a Config or an IngestConfig.
var ErrConfig = errors.New("invalid benchmark configuration")

// problems gathers what is wrong with a configuration, to report it all at
// once.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// scale checks an RW1 scale factor, and maxInFlight an open loop's bound.
func (p *problems) scale(s float64) {
	if !(s > 0) || math.IsInf(s, 0) || s > 100 {
		p.add("scale %v: want 0 < scale ≤ 100", s)
	}
}

// rates checks offered rates, requests/s.
func (p *problems) rates(rates ...float64) {
	for _, r := range rates {
		if !(r > 0) || math.IsInf(r, 0) {
			p.add("rate %v: want > 0 requests/s", r)
		}
	}
}

func (p *problems) maxInFlight(n int) {
	if n < 1 || n > 10_000 {
		p.add("max in flight %d: want 1..10000", n)
	}
}

// err is nil if nothing is wrong, else an error wrapping ErrConfig that
// names every problem.
func (p problems) err(what string) error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w: %s", what, ErrConfig, strings.Join(p, "; "))
}
