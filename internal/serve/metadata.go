package serve

import (
	"encoding/json"
	"net/http"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/metadata"
	"github.com/kiln-dev/kiln/internal/tile"
)

// metadataJSON is the body of GET /v1/metadata: the project's description
// (package metadata), made once. The project is immutable, so the body is
// too.
func (s *Server) metadataJSON() ([]byte, error) {
	s.metadataOnce.Do(func() {
		var plans map[*definition.View]*tile.Plan
		plans, s.metadataErr = tile.CompileProject(s.cfg.Project)
		if s.metadataErr != nil {
			return
		}
		b, err := json.Marshal(metadata.Describe(s.cfg.Project, plans))
		s.metadataBody, s.metadataErr = append(b, '\n'), err
	})
	return s.metadataBody, s.metadataErr
}

func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	body, err := s.metadataJSON()
	if err != nil {
		s.cfg.Logger.Error("describing the project", "err", err)
		writeError(w, http.StatusInternalServerError, "describing the project failed: "+err.Error(), nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}
