package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/catalog"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/query"
	"github.com/kiln-dev/kiln/internal/rebuild"
	"github.com/kiln-dev/kiln/internal/serve"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/tile"
)

// ChangedViewsError refuses to start on views whose definition changed
// since their rows were written: the rows no longer mean what the project
// says, and serving them (or nothing) silently would lose data. It says
// which views changed, how, and what to do.
type ChangedViewsError struct {
	// File is the project file, for the commands it suggests.
	File    string
	Changes []catalog.Change
	// Offline: the refusal of kiln rebuild (views changed that it was not
	// asked to rebuild or reset).
	Offline bool
	// NoArchive: a rebuild was asked for but the node has no archive.
	NoArchive bool
}

func (e *ChangedViewsError) Error() string {
	var b strings.Builder
	names := make([]string, len(e.Changes))
	for i, ch := range e.Changes {
		names[i] = ch.View
	}
	if len(e.Changes) == 1 {
		fmt.Fprintf(&b, "the definition of view %s changed since its rows were written:\n", names[0])
	} else {
		fmt.Fprintf(&b, "the definitions of views %s changed since their rows were written:\n", strings.Join(names, ", "))
	}
	for _, ch := range e.Changes {
		fmt.Fprintf(&b, "  view %s:\n", ch.View)
		for _, d := range ch.Differences {
			fmt.Fprintf(&b, "    - %s\n", d)
		}
	}
	file := e.File
	if file == "" {
		file = "kiln.yaml"
	}
	view := names[0]
	switch {
	case e.NoArchive:
		fmt.Fprintf(&b, "Their rows no longer match, and there is no event archive to rebuild them from. Either\n"+
			"  start them empty: kiln serve -c %s --reset-view %s (their values start from the events that arrive from now on), or\n"+
			"  put the project file back as it was.", file, view)
	case e.Offline:
		fmt.Fprintf(&b, "Name each of them: kiln rebuild -c %s --view %s rebuilds it from the event archive,\n"+
			"--reset-view %s starts it empty; or put the project file back as it was.", file, view, view)
	default:
		fmt.Fprintf(&b, "Their rows no longer match. To start, choose one:\n"+
			"  kiln serve -c %s --rebuild               rebuild the changed views from the event archive while serving the others\n"+
			"  kiln rebuild -c %s --view %s    rebuild a view offline, with the server stopped, then start it\n"+
			"  kiln serve -c %s --reset-view %s  start a view empty (its values start from the events that arrive from now on)\n"+
			"or put the project file back as it was.", file, file, view, file, view)
	}
	return b.String()
}

// viewOptions say what to do with the views against the stored catalog.
type viewOptions struct {
	// rebuildChanged rebuilds changed views from the archive; else a
	// changed view not in reset or force is refused.
	rebuildChanged bool
	// force rebuilds the named views, changed or not (kiln rebuild).
	force map[string]bool
	// reset starts the named views empty under a new generation.
	reset   map[string]bool
	archive bool // the node has an archive
	offline bool
}

// views is what reconciling the project with the catalog decided.
type views struct {
	cat *catalog.Catalog
	// plans at each view's generation.
	plans map[*definition.View]*tile.Plan
	// rebuild lists the views to replay from the archive, in project order.
	rebuild []*definition.View
	// waiting (a serving process) lists views another process is
	// rebuilding.
	waiting []*definition.View
}

func setOf(names []string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// checkNames refuses view names the project does not have.
func checkNames(p *definition.Project, flag string, names []string) error {
	for _, n := range names {
		if p.View(n) == nil {
			var have []string
			for _, v := range p.Views {
				have = append(have, v.Name)
			}
			return fmt.Errorf("%s %s: the project has no view %s (views: %s)", flag, n, n, strings.Join(have, ", "))
		}
	}
	return nil
}

// reconcile compares the project with the catalog in st, decides each
// view's generation and whether it is rebuilt, and saves the catalog
// before any row of a new generation can be written.
func reconcile(ctx context.Context, st store.Store, p *definition.Project, plans map[*definition.View]*tile.Plan, o viewOptions, log *slog.Logger) (*views, error) {
	cat, err := catalog.Load(ctx, st)
	if err != nil {
		return nil, err
	}
	out := &views{cat: cat, plans: map[*definition.View]*tile.Plan{}}
	changes := catalog.Compare(cat, p, plans)
	first := !cat.Exists()
	var refused []catalog.Change
	noArchive := false
	for _, ch := range changes {
		v := p.View(ch.View)
		if ch.Kind == catalog.Removed {
			log.Warn("view is no longer in the project: its rows are no longer served (the event archive keeps its events)", "view", ch.View)
			delete(cat.Views, ch.View)
			continue
		}
		rec := ch.Current
		switch {
		case o.reset[ch.View]:
			rec.Generation, rec.State = cat.NextGeneration(), catalog.Ready
			log.Warn("starting the view empty, as asked (--reset-view): its earlier rows are no longer served; its values start from the events that arrive from now on",
				"view", ch.View, "generation", rec.Generation, "changes", strings.Join(ch.Differences, "; "))
		case o.force[ch.View]:
			if !o.archive {
				return nil, errors.New("kiln rebuild needs the event archive: give --archive DIR")
			}
			rec.Generation, rec.State = cat.NextGeneration(), catalog.Rebuilding
		case first:
			// No catalog yet (a first start, or data from before the
			// catalog): the rows were written under this definition as far
			// as anyone can tell; record it.
			rec.Generation, rec.State = 0, catalog.Ready
		case ch.Kind == catalog.New:
			rec.Generation = cat.NextGeneration()
			if o.archive {
				rec.State = catalog.Rebuilding
				log.Info("new view: filling it from the event archive", "view", ch.View)
			} else {
				rec.State = catalog.Ready
				log.Warn("new view, and no event archive to fill it from: it starts empty", "view", ch.View)
			}
		case ch.Kind == catalog.Changed && o.rebuildChanged && o.archive:
			rec.Generation, rec.State = cat.NextGeneration(), catalog.Rebuilding
			log.Warn("the view's definition changed: rebuilding it from the event archive", "view", ch.View, "changes", strings.Join(ch.Differences, "; "))
		case ch.Kind == catalog.Changed:
			noArchive = noArchive || (o.rebuildChanged && !o.archive)
			refused = append(refused, ch)
			continue
		case ch.Stored.State == catalog.Rebuilding:
			// A rebuild did not finish (a crash, a stop): its rows are a
			// partial replay. Start them afresh and replay again.
			if !o.archive {
				noArchive = true
				refused = append(refused, catalog.Change{View: ch.View, Kind: catalog.Changed,
					Differences: []string{"its rebuild from the event archive did not finish"}})
				continue
			}
			rec.Generation, rec.State = cat.NextGeneration(), catalog.Rebuilding
			log.Warn("the view's last rebuild did not finish: rebuilding it again", "view", ch.View)
		default:
			if len(ch.Differences) > 0 {
				log.Info("the view's definition changed without changing its rows", "view", ch.View, "changes", strings.Join(ch.Differences, "; "))
			}
		}
		cat.Views[ch.View] = rec
		if rec.State == catalog.Rebuilding {
			out.rebuild = append(out.rebuild, v)
		}
		out.plans[v] = plans[v].WithGeneration(rec.Generation)
	}
	if len(refused) > 0 {
		return nil, &ChangedViewsError{File: p.File, Changes: refused, Offline: o.offline, NoArchive: noArchive}
	}
	if first {
		log.Info("recorded the layout of every view in the store's catalog", "views", len(p.Views))
	}
	if err := cat.Save(ctx, st); err != nil {
		return nil, err
	}
	return out, nil
}

// readCatalog is reconcile for a process that only serves: it writes
// nothing, and refuses a view whose rows were written under another
// definition (the ingest process must start with the project first).
func readCatalog(ctx context.Context, st store.Store, p *definition.Project, plans map[*definition.View]*tile.Plan) (*views, error) {
	cat, err := catalog.Load(ctx, st)
	if err != nil {
		return nil, err
	}
	out := &views{cat: cat, plans: map[*definition.View]*tile.Plan{}}
	if !cat.Exists() {
		out.plans = plans
		return out, nil
	}
	var refused []string
	for _, ch := range catalog.Compare(cat, p, plans) {
		v := p.View(ch.View)
		switch ch.Kind {
		case catalog.Removed:
			continue
		case catalog.New, catalog.Changed:
			refused = append(refused, ch.View)
			continue
		}
		out.plans[v] = plans[v].WithGeneration(ch.Stored.Generation)
		if ch.Stored.State == catalog.Rebuilding {
			out.waiting = append(out.waiting, v)
		}
	}
	if len(refused) > 0 {
		return nil, fmt.Errorf("the store's rows of view(s) %s were written under another definition, or none: start the ingest process (kiln serve --role ingest) with this project file first; it rebuilds or fills them, then start this one",
			strings.Join(refused, ", "))
	}
	return out, nil
}

// rebuilds runs the rebuilds of a node, one view after the other, and
// keeps their progress for /readyz and the unavailable views' answers. Its
// methods do nothing on a nil *rebuilds (a process that only serves).
type rebuilds struct {
	node   *Node
	views  []*definition.View
	t0     int64
	cancel context.CancelFunc
	done   chan struct{} // closed when the rebuilds stop; nil before start

	mu     sync.Mutex // guards state
	state  map[string]*rebuildState
	order  []string
	logger *slog.Logger
}

type rebuildState struct {
	progress rebuild.Progress
	err      error
}

// newRebuilds prepares the rebuilds of vs; t0 is the writer's clock when
// the live write path started including them.
func newRebuilds(n *Node, vs []*definition.View, t0 int64) *rebuilds {
	r := &rebuilds{node: n, views: vs, t0: t0, state: map[string]*rebuildState{}, logger: n.cfg.Logger}
	for _, v := range vs {
		r.state[v.Name] = &rebuildState{progress: rebuild.Progress{View: v.Name}}
		r.order = append(r.order, v.Name)
	}
	return r
}

// markUnavailable makes the views to rebuild unavailable to e's readers.
func (r *rebuilds) markUnavailable(e *query.Engine) {
	if r == nil {
		return
	}
	for _, v := range r.views {
		e.SetUnavailable(v.Name, r.reason(v.Name))
	}
}

// reason is what a read of a view being rebuilt is told.
func (r *rebuilds) reason(view string) func() string {
	return func() string {
		r.mu.Lock()
		defer r.mu.Unlock()
		st := r.state[view]
		if st == nil {
			return "it is being rebuilt; retry later"
		}
		if st.err != nil {
			return fmt.Sprintf("its rebuild from the event archive failed (%v); restart kiln serve to rebuild it again", st.err)
		}
		return fmt.Sprintf("it is being rebuilt from the event archive (%s); retry later", st.progress)
	}
}

// list is the views being rebuilt, for /readyz.
func (r *rebuilds) list() []serve.Rebuild {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []serve.Rebuild
	for _, name := range r.order {
		st := r.state[name]
		if st == nil {
			continue
		}
		rb := serve.Rebuild{View: name, DatesDone: st.progress.DatesDone, DatesTotal: st.progress.DatesTotal, EventsReplayed: st.progress.Replayed}
		if st.err != nil {
			rb.Error = st.err.Error()
		}
		out = append(out, rb)
	}
	return out
}

// start replays the views from the archive in the background, one after
// the other.
func (r *rebuilds) start() {
	if r == nil || len(r.views) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		for _, v := range r.views {
			if ctx.Err() != nil {
				return
			}
			r.run(ctx, v)
		}
	}()
}

// run rebuilds one view and, when it is done, records it ready in the
// catalog and serves it again.
func (r *rebuilds) run(ctx context.Context, v *definition.View) {
	n := r.node
	var hook func(context.Context, rebuild.Progress) error
	if h := n.cfg.RebuildBatch; h != nil {
		hook = func(ctx context.Context, _ rebuild.Progress) error { return h(ctx, v.Name) }
	}
	sum, err := rebuild.Run(ctx, rebuild.Config{
		View: v, Plan: n.Plans[v], Archive: n.cfg.Archive, Writer: n.Writer, Before: r.t0,
		Logger: r.logger, BeforeBatch: hook,
		Progress: func(p rebuild.Progress) {
			r.mu.Lock()
			r.state[v.Name].progress = p
			r.mu.Unlock()
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			r.logger.Warn("rebuild stopped before it finished: the next start rebuilds the view again", "view", v.Name)
			return
		}
		r.logger.Error("rebuilding the view failed: its features stay unavailable; restart kiln serve to rebuild it again", "view", v.Name, "err", err)
		r.mu.Lock()
		r.state[v.Name].err = err
		r.mu.Unlock()
		return
	}
	n.catMu.Lock()
	n.views.cat.Views[v.Name].State = catalog.Ready
	saveErr := n.views.cat.Save(context.Background(), n.Store)
	n.catMu.Unlock()
	if saveErr != nil {
		r.logger.Error("the view is rebuilt, but recording it in the catalog failed: the next start rebuilds it again", "view", v.Name, "err", saveErr)
	}
	r.mu.Lock()
	delete(r.state, v.Name)
	r.mu.Unlock()
	if n.Engine != nil {
		n.Engine.SetUnavailable(v.Name, nil)
	}
	r.logger.Info(sum.String(), "view", v.Name)
}

// WaitRebuilds waits until the rebuilds Start began have ended — done,
// failed or stopped — or ctx ends.
func (n *Node) WaitRebuilds(ctx context.Context) error {
	r := n.rebuilds
	if r == nil || r.done == nil {
		return nil
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Rebuilding lists the views being rebuilt (or whose rebuild failed).
func (n *Node) Rebuilding() []serve.Rebuild { return n.rebuilds.list() }

// stop stops the rebuilds in progress and waits for them: the catalog
// still says rebuilding, so the next start rebuilds them again.
func (r *rebuilds) stop() {
	if r == nil || r.done == nil {
		return
	}
	r.cancel()
	<-r.done
}

// markWaiting (a process that only serves) makes the views another
// process is rebuilding unavailable.
func (n *Node) markWaiting() {
	for _, v := range n.views.waiting {
		n.Engine.SetUnavailable(v.Name, func() string {
			return "another process (the ingest process) is rebuilding it from the event archive; retry later"
		})
	}
}

// watchCatalog (a process that only serves) reads the catalog every
// Config.CatalogPoll until the views another process rebuilds are ready,
// then serves them.
func (n *Node) watchCatalog() {
	if len(n.views.waiting) == 0 || n.Engine == nil {
		return
	}
	every := n.cfg.CatalogPoll
	if every <= 0 {
		every = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n.stopWatch = func() { cancel(); <-done }
	waiting := slices.Clone(n.views.waiting)
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for len(waiting) > 0 {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cat, err := catalog.Load(ctx, n.Store)
			if err != nil {
				n.cfg.Logger.Warn("reading the catalog of view layouts failed; trying again", "err", err)
				continue
			}
			waiting = slices.DeleteFunc(waiting, func(v *definition.View) bool {
				rec := cat.Views[v.Name]
				switch {
				case rec == nil:
					return false
				case rec.Generation != n.Plans[v].Generation():
					n.cfg.Logger.Error("the view was started afresh by another process since this one started: restart this process to serve it", "view", v.Name)
					n.Engine.SetUnavailable(v.Name, func() string {
						return "its rows were started afresh since this process started: restart this serving process"
					})
					return true
				case rec.State == catalog.Ready:
					n.cfg.Logger.Info("the view is rebuilt: serving it", "view", v.Name)
					n.Engine.SetUnavailable(v.Name, nil)
					return true
				}
				return false
			})
		}
	}()
}
