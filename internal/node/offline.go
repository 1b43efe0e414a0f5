package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/catalog"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/rebuild"
	"github.com/kiln-dev/kiln/internal/tile"
)

// RebuildConfig configures Rebuild. Project, Archive and Views (or
// ResetViews) are required; DataDir with the embedded store.
type RebuildConfig struct {
	Project *definition.Project
	DataDir string
	Archive *archive.Archive
	// Views are rebuilt from the archive, whether or not their definition
	// changed.
	Views []string
	// ResetViews are started empty.
	ResetViews []string
	// Ingest configures the write path the rebuild writes through.
	Ingest     ingest.Options
	CacheBytes int64
	Logger     *slog.Logger
	// Progress, if set, is told the progress after each batch.
	Progress func(rebuild.Progress)
}

// Rebuild rebuilds views offline (kiln rebuild): with no server running
// on the store, it starts the named views' rows afresh under a new
// generation and replays the archive into them through the write path,
// then records them ready. Views added to the project and views whose last
// rebuild did not finish are rebuilt too, as a start of the server would;
// a changed view it is not asked to rebuild or reset is refused. It
// returns a summary per rebuilt view. If ctx ends first, the catalog still
// says rebuilding, and the next Rebuild or Start rebuilds them again.
func Rebuild(ctx context.Context, cfg RebuildConfig) (sums []rebuild.Summary, err error) {
	switch {
	case cfg.Project == nil:
		return nil, errors.New("node: RebuildConfig needs a Project")
	case cfg.Archive == nil:
		return nil, errors.New("rebuilding needs the event archive: give --archive DIR")
	case len(cfg.Views) == 0 && len(cfg.ResetViews) == 0:
		return nil, errors.New("name the views to rebuild: --view NAME (or --reset-view NAME to start one empty)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Ingest.Logger == nil {
		cfg.Ingest.Logger = cfg.Logger
	}
	for _, names := range []struct {
		flag  string
		names []string
	}{{"--view", cfg.Views}, {"--reset-view", cfg.ResetViews}} {
		if err := checkNames(cfg.Project, names.flag, names.names); err != nil {
			return nil, err
		}
	}
	if cfg.Project.OnlineStore.Type != definition.Redis && cfg.DataDir == "" {
		return nil, errors.New("the embedded store needs a data directory (--data)")
	}
	plans, err := tile.CompileProject(cfg.Project)
	if err != nil {
		return nil, err
	}
	if cfg.DataDir != "" {
		// What the last run journaled but did not archive yet goes to the
		// archive first, so the rebuild replays it.
		j, err := openJournal(Config{Project: cfg.Project, DataDir: cfg.DataDir, Archive: cfg.Archive, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		if err := j.Close(ctx); err != nil {
			return nil, err
		}
	}
	st, err := openStore(Config{Project: cfg.Project, DataDir: cfg.DataDir, CacheBytes: cfg.CacheBytes, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	vs, err := reconcile(ctx, st, cfg.Project, plans, viewOptions{
		force: setOf(cfg.Views), reset: setOf(cfg.ResetViews), archive: true, offline: true,
	}, cfg.Logger)
	if err != nil {
		return nil, err
	}
	w, err := ingest.New(cfg.Project, vs.plans, st, cfg.Ingest)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, w.Close()) }()
	t0 := w.Now()
	for _, v := range vs.rebuild {
		sum, err := rebuild.Run(ctx, rebuild.Config{
			View: v, Plan: vs.plans[v], Archive: cfg.Archive, Writer: w, Before: t0,
			Logger: cfg.Logger, Progress: cfg.Progress,
		})
		if err != nil {
			return sums, fmt.Errorf("%w; the view is not rebuilt: run kiln rebuild again, or kiln serve rebuilds it when it starts", err)
		}
		sums = append(sums, sum)
		vs.cat.Views[v.Name].State = catalog.Ready
		if err := vs.cat.Save(ctx, st); err != nil {
			return sums, err
		}
	}
	return sums, nil
}
