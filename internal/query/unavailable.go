package query

import (
	"errors"
	"fmt"
	"maps"

	"github.com/kiln-dev/kiln/internal/definition"
)

// ErrViewUnavailable is wrapped by the *UnavailableError of a read that
// asks for features of a view that cannot be served now (it is being
// rebuilt). It is retryable: the API answers 503 / UNAVAILABLE.
var ErrViewUnavailable = errors.New("view unavailable")

// UnavailableError refuses a read of a view that cannot be served now.
type UnavailableError struct {
	View   string
	Reason string // why, and until when; from the reason given to SetUnavailable
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("the features of view %s are unavailable: %s", e.View, e.Reason)
}

func (e *UnavailableError) Unwrap() error { return ErrViewUnavailable }

// SetUnavailable makes reads of any feature of the named view fail with an
// *UnavailableError whose Reason is reason(), called at each refused read
// (so it can say how far a rebuild has come); a nil reason serves the view
// again. Reads of other views are unaffected.
func (e *Engine) SetUnavailable(view string, reason func() string) {
	v := e.cfg.Project.View(view)
	if v == nil {
		return
	}
	e.unavailableMu.Lock()
	defer e.unavailableMu.Unlock()
	m := map[*definition.View]func() string{}
	if old := e.unavailable.Load(); old != nil {
		maps.Copy(m, *old)
	}
	if reason == nil {
		delete(m, v)
	} else {
		m[v] = reason
	}
	if len(m) == 0 {
		e.unavailable.Store(nil)
		return
	}
	e.unavailable.Store(&m)
}

// checkAvailable returns the error of the first view of p that is
// unavailable, or nil.
func (e *Engine) checkAvailable(p *Prepared) error {
	m := e.unavailable.Load()
	if m == nil {
		return nil
	}
	for _, pe := range p.Entities {
		for _, vi := range pe.views {
			if reason := (*m)[vi.view]; reason != nil {
				return &UnavailableError{View: vi.view.Name, Reason: reason()}
			}
		}
	}
	return nil
}
