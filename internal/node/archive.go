package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/archive/s3bucket"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/spool"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
)

// ArchiveNone is the archive location that keeps no archive.
const ArchiveNone = "none"

// OpenArchive opens the event archive at location: a directory, an
// S3-compatible bucket (s3://BUCKET/PREFIX, see s3bucket.Open), or
// ArchiveNone (nil, no archive). An empty location is the default: the
// directory "archive" in dataDir with the embedded store, no archive with
// Redis (whose processes share no disk). It returns the archive and how it
// names its place, for the log.
func OpenArchive(ctx context.Context, location string, p *definition.Project, dataDir string) (*archive.Archive, string, error) {
	switch {
	case location == ArchiveNone:
		return nil, "", nil
	case location == "" && p.OnlineStore.Type == definition.Redis:
		return nil, "", nil
	case location == "":
		if dataDir == "" {
			return nil, "", errors.New("the event archive goes in the data directory by default: give --data, or --archive")
		}
		location = filepath.Join(dataDir, "archive")
	case strings.HasPrefix(location, "s3://"):
		b, err := s3bucket.Open(ctx, location)
		if err != nil {
			return nil, "", err
		}
		return archive.New(b), location, nil
	case strings.Contains(location, "://"):
		return nil, "", fmt.Errorf("archive location %q: give a directory, s3://BUCKET/PREFIX, or %s", location, ArchiveNone)
	}
	b, err := archive.NewDir(location)
	if err != nil {
		return nil, "", err
	}
	return archive.New(b), location, nil
}

// openJournal opens the archive's journal of an ingesting process.
func openJournal(cfg Config) (*spool.Spool, error) {
	o := cfg.Journal
	o.Archive, o.Project = cfg.Archive, cfg.Project
	if o.Logger == nil {
		o.Logger = cfg.Logger
	}
	if o.Now == nil {
		o.Now = cfg.Ingest.Now
	}
	if o.Dir == "" {
		if cfg.DataDir == "" {
			return nil, errors.New("the event archive's journal needs a local directory: give --data (it goes in DATA/archive-journal)")
		}
		o.Dir = filepath.Join(cfg.DataDir, "archive-journal")
	}
	j, err := spool.Open(o)
	if err != nil {
		return nil, err
	}
	cfg.Logger.Info("archiving events", "journal", o.Dir, "id", j.ID())
	return j, nil
}

// Offline is the write path of a data directory no server is running on:
// its store, its archive's journal and the ingest writer, with no listener
// and no streaming source. Offline commands (kiln import) use it.
type Offline struct {
	Plans   map[*definition.View]*tile.Plan
	Store   store.Store
	Writer  *ingest.Writer
	Journal *spool.Spool // nil without an archive
	cfg     Config
}

// OpenOffline opens the write path of cfg's project and data directory.
// On the embedded store it fails while a server holds the directory.
func OpenOffline(cfg Config) (_ *Offline, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Ingest.Logger == nil {
		cfg.Ingest.Logger = cfg.Logger
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = time.Minute
	}
	if cfg.Project.OnlineStore.Type != definition.Redis && cfg.DataDir == "" {
		return nil, errors.New("the embedded store needs a data directory (--data)")
	}
	o := &Offline{cfg: cfg}
	if o.Plans, err = tile.CompileProject(cfg.Project); err != nil {
		return nil, err
	}
	if o.Store, err = openStore(cfg); err != nil {
		if cfg.Project.OnlineStore.Type != definition.Redis {
			return nil, fmt.Errorf("%w (is kiln serve running on %s? stop it, or import over its API with --url)", err, cfg.DataDir)
		}
		return nil, err
	}
	defer func() {
		if err != nil {
			o.Store.Close()
		}
	}()
	if cfg.Archive != nil {
		if o.Journal, err = openJournal(cfg); err != nil {
			return nil, err
		}
		cfg.Ingest.Archive = o.Journal
	}
	if o.Writer, err = ingest.New(cfg.Project, o.Plans, o.Store, cfg.Ingest); err != nil {
		if o.Journal != nil {
			o.Journal.Close(context.Background())
		}
		return nil, err
	}
	return o, nil
}

// Close writes what the writer holds, archives the journal and closes the
// store.
func (o *Offline) Close() error {
	errs := []error{o.Writer.Close()}
	if o.Journal != nil {
		ctx, cancel := context.WithTimeout(context.Background(), o.cfg.ShutdownTimeout)
		errs = append(errs, o.Journal.Close(ctx))
		cancel()
	}
	errs = append(errs, o.Store.Close())
	return errors.Join(errs...)
}
