package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/archive/s3bucket"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/spool"
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
