package projectfile_test

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

const day = 24 * time.Hour

// validFile is the example of the project file format.
const validFile = `project: feed
entities:
  user: {keys: [user_id]}
  post: {keys: [post_id]}
sources:
  engagements:
    type: push
    event_time: ts
    max_future_skew: 30s
    fields: {user_id: int64, post_id: int64, kind: string, dwell_ms: float64, paid: bool}
views:
  user_engagement:
    entity: user
    source: engagements
    features:
      views:      {agg: count, where: {kind: view}, windows: [1h, 24h, 7d, 30d]}
      likes:      {agg: count, where: {kind: [like, share]}, windows: [1h]}
      dwell_mean: {agg: mean, field: dwell_ms, where: {kind: view, paid: false}, windows: [24h, 7d]}
      last_post:  {agg: last, field: post_id}
  post_engagement:
    entity: post
    source: engagements
    features:
      long_views: {agg: count, where: {dwell_ms: [1000, 2.5], user_id: [-1, 42]}, windows: [90s, 5m]}
services:
  user_profile: {views: [user_engagement]}
  some_model: {features: [user_engagement:views_1h, user_engagement:last_post]}
  mixed:
    features:
      - post_engagement:long_views_90s
    views: [user_engagement]
`

func TestParseValid(t *testing.T) {
	p, err := projectfile.Parse("kiln.yaml", []byte(validFile))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "feed" || p.File != "kiln.yaml" {
		t.Errorf("name %q file %q", p.Name, p.File)
	}
	if got := names(p.Entities, func(e *definition.Entity) string { return e.Name }); got != "user post" {
		t.Errorf("entities %q", got)
	}
	if k := p.Entity("post").Keys; len(k) != 1 || k[0] != "post_id" {
		t.Errorf("post keys %v", k)
	}

	src := p.Source("engagements")
	if src == nil || src.Type != definition.Push || src.EventTime != "ts" || src.MaxFutureSkew != 30*time.Second {
		t.Fatalf("source %+v", src)
	}
	wantFields := []definition.Field{
		{Name: "user_id", Type: event.Int64}, {Name: "post_id", Type: event.Int64}, {Name: "kind", Type: event.String},
		{Name: "dwell_ms", Type: event.Float64}, {Name: "paid", Type: event.Bool},
	}
	if fmt.Sprint(src.Fields) != fmt.Sprint(wantFields) {
		t.Errorf("fields %v, want %v", src.Fields, wantFields)
	}

	if got := names(p.Views, func(v *definition.View) string { return v.Name }); got != "user_engagement post_engagement" {
		t.Errorf("views %q", got)
	}
	ue := p.View("user_engagement")
	if ue.Entity != p.Entity("user") || ue.Source != src {
		t.Errorf("user_engagement does not point at its entity and source")
	}
	if got := names(ue.Features, func(f *definition.Feature) string { return f.Name }); got != "views likes dwell_mean last_post" {
		t.Errorf("features %q", got)
	}
	views := ue.Features[0]
	if views.Agg != definition.Count || views.Field != "" {
		t.Errorf("views agg %v field %q", views.Agg, views.Field)
	}
	if fmt.Sprint(views.Windows) != fmt.Sprint([]time.Duration{time.Hour, day, 7 * day, 30 * day}) {
		t.Errorf("views windows %v", views.Windows)
	}
	if strings.Join(views.WindowNames, " ") != "1h 24h 7d 30d" {
		t.Errorf("views window names %v", views.WindowNames)
	}
	checkWhere(t, views.Where, `kind=["view"]`)
	checkWhere(t, ue.Features[1].Where, `kind=["like" "share"]`)

	dm := ue.Features[2]
	if dm.Agg != definition.Mean || dm.Field != "dwell_ms" {
		t.Errorf("dwell_mean agg %v field %q", dm.Agg, dm.Field)
	}
	checkWhere(t, dm.Where, `kind=["view"] paid=[false]`)
	if dm.Where[1].Values[0].Kind != event.Bool {
		t.Errorf("paid filter value is %v, want bool", dm.Where[1].Values[0].Kind)
	}

	lp := ue.Features[3]
	if lp.Agg != definition.Last || lp.Field != "post_id" || lp.Windows != nil || lp.WindowNames != nil {
		t.Errorf("last_post %+v", lp)
	}

	pe := p.View("post_engagement")
	lv := pe.Features[0]
	if fmt.Sprint(lv.Windows) != fmt.Sprint([]time.Duration{90 * time.Second, 5 * time.Minute}) {
		t.Errorf("long_views windows %v", lv.Windows)
	}
	checkWhere(t, lv.Where, `dwell_ms=[1000 2.5] user_id=[-1 42]`)
	if v := lv.Where[0].Values[0]; v.Kind != event.Float64 || v.Float != 1000 {
		t.Errorf("dwell_ms filter value %+v, want float64 1000", v)
	}
	if v := lv.Where[1].Values[0]; v.Kind != event.Int64 || v.Int != -1 {
		t.Errorf("user_id filter value %+v, want int64 -1", v)
	}

	if got := names(p.Services, func(s *definition.Service) string { return s.Name }); got != "user_profile some_model mixed" {
		t.Errorf("services %q", got)
	}
	up := p.Service("user_profile")
	wantUP := "user_engagement:views_1h user_engagement:views_24h user_engagement:views_7d user_engagement:views_30d " +
		"user_engagement:likes_1h user_engagement:dwell_mean_24h user_engagement:dwell_mean_7d user_engagement:last_post"
	if got := refNames(up.Features); got != wantUP {
		t.Errorf("user_profile serves\n %s\nwant\n %s", got, wantUP)
	}
	if r := up.Features[2]; r.View != ue || r.Feature != views || r.Window != 7*day || r.WindowName != "7d" {
		t.Errorf("user_profile feature 2 %+v", r)
	}
	if got := refNames(p.Service("some_model").Features); got != "user_engagement:views_1h user_engagement:last_post" {
		t.Errorf("some_model serves %s", got)
	}
	if got := refNames(p.Service("mixed").Features); got != "post_engagement:long_views_90s "+wantUP {
		t.Errorf("mixed serves %s", got)
	}
}

func TestMaxFutureSkew(t *testing.T) {
	for _, tc := range []struct {
		line string
		want time.Duration
	}{
		{"", time.Minute},
		{"max_future_skew: 0s", 0},
		{"max_future_skew: 5m", 5 * time.Minute},
		{"max_future_skew: 1d", day},
		{"max_future_skew: 24h", day},
	} {
		p, err := projectfile.Parse("t.yaml", []byte(strings.Replace(validFile, "max_future_skew: 30s", tc.line, 1)))
		if err != nil {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		if got := p.Source("engagements").MaxFutureSkew; got != tc.want {
			t.Errorf("%q: MaxFutureSkew %v, want %v", tc.line, got, tc.want)
		}
	}
}

func TestMinEventTime(t *testing.T) {
	for _, tc := range []struct {
		line string
		want int64
	}{
		{"", definition.DefaultMinEventTime},
		{"min_event_time: 2000-01-01", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()},
		{"min_event_time: 1970-01-01", 0},
		{`min_event_time: "2020-06-01"`, time.Date(2020, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()},
		{"min_event_time: 2020-06-01T12:00:00+02:00", time.Date(2020, 6, 1, 10, 0, 0, 0, time.UTC).UnixMilli()},
	} {
		p, err := projectfile.Parse("t.yaml", []byte(strings.Replace(validFile, "max_future_skew: 30s", tc.line, 1)))
		if err != nil {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		if got := p.Source("engagements").MinEventTime; got != tc.want {
			t.Errorf("%q: MinEventTime %d, want %d", tc.line, got, tc.want)
		}
	}
}

func TestArchiveRetain(t *testing.T) {
	for _, tc := range []struct {
		line string
		want time.Duration
	}{
		{"", 0},
		{"archive: {retain: 400d}", 400 * 24 * time.Hour},
		{"archive: {retain: 1d}", 24 * time.Hour},
		{"archive: {}", 0},
	} {
		p, err := projectfile.Parse("t.yaml", []byte(strings.Replace(validFile, "max_future_skew: 30s", tc.line, 1)))
		if err != nil {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		if got := p.Source("engagements").ArchiveRetain; got != tc.want {
			t.Errorf("%q: ArchiveRetain %v, want %v", tc.line, got, tc.want)
		}
	}
	for line, want := range map[string]string{
		"archive: {retain: 12h}":  `retain "12h" is shorter than a day`,
		"archive: {retian: 400d}": `unknown key "retian" in archive of source "engagements" (allowed: retain`,
		"archive: {retain: 4x}":   `retain "4x"`,
	} {
		_, err := projectfile.Parse("t.yaml", []byte(strings.Replace(validFile, "max_future_skew: 30s", line, 1)))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", line, err, want)
		}
	}
}

func TestArchiveColumnNamesAreNotFields(t *testing.T) {
	for _, name := range []string{"event_time", "arrival", "origin_stream", "origin_offset"} {
		_, err := projectfile.Parse("t.yaml", []byte(strings.Replace(validFile, "fields: {user_id: int64,", "fields: {"+name+": int64, user_id: int64,", 1)))
		if err == nil || !strings.Contains(err.Error(), "column the event archive adds") {
			t.Errorf("field %s: got %v, want the archive column refusal", name, err)
		}
	}
}

func TestExampleFeedProject(t *testing.T) {
	p, err := projectfile.Load(filepath.Join("..", "..", examples.FeedProjectName))
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*definition.Project{p, embedded} {
		if p.Name != "feed" {
			t.Errorf("project %q", p.Name)
		}
		ue, pe := p.View("user_engagement"), p.View("post_engagement")
		if ue == nil || pe == nil {
			t.Fatalf("views %v", names(p.Views, func(v *definition.View) string { return v.Name }))
		}
		if n := len(ue.Outputs()); n != 12 {
			t.Errorf("user_engagement serves %d values, want 12: %s", n, refNames(ue.Outputs()))
		}
		if n := len(pe.Outputs()); n != 19 {
			t.Errorf("post_engagement serves %d values, want 19: %s", n, refNames(pe.Outputs()))
		}
		if ue.Entity.Name != "user" || pe.Entity.Name != "post" {
			t.Errorf("entities %s %s", ue.Entity.Name, pe.Entity.Name)
		}
		if n := len(p.Service("user_profile").Features); n != 12 {
			t.Errorf("user_profile serves %d, want 12", n)
		}
		if n := len(p.Service("ranking").Features); n != 31 {
			t.Errorf("ranking serves %d, want 31", n)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kiln.yaml")
	if err := os.WriteFile(path, []byte("project: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := projectfile.Load(path)
	var errs *projectfile.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Load: %v, want *Errors", err)
	}
	if !strings.HasPrefix(errs.List[0].Error(), path+":1:1: ") {
		t.Errorf("error %q does not start with %s:1:1:", errs.List[0], path)
	}
	if _, err := projectfile.Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// header is a project up to the features of view v; features start at
// line 14.
const header = `project: p
entities:
  user: {keys: [user_id]}
sources:
  ev:
    type: push
    event_time: ts
    fields: {user_id: int64, kind: string, dwell_ms: float64, ok: bool}
views:
  v:
    entity: user
    source: ev
    features:
`

// Each want is "LINE phrase" or "LINE:COL phrase": some error must be at
// that line (and column), with a column, and contain the phrase.
func TestParseErrors(t *testing.T) {
	f := func(yaml string, wants ...string) {
		t.Helper()
		p, err := projectfile.Parse("t.yaml", []byte(yaml))
		if err == nil {
			t.Errorf("no error for\n%s\ngot project %+v", yaml, p)
			return
		}
		var errs *projectfile.Errors
		if !errors.As(err, &errs) {
			t.Errorf("error %T %v is not *projectfile.Errors", err, err)
			return
		}
		if p != nil {
			t.Errorf("a project came back with the errors")
		}
		for _, want := range wants {
			at, phrase, _ := strings.Cut(want, " ")
			lineText, colText, hasCol := strings.Cut(at, ":")
			line, _ := strconv.Atoi(lineText)
			col, _ := strconv.Atoi(colText)
			found := false
			for _, e := range errs.List {
				if e.Line == line && e.Column > 0 && (!hasCol || e.Column == col) && e.File == "t.yaml" && strings.Contains(e.Msg, phrase) {
					found = true
				}
			}
			if !found {
				t.Errorf("no error at %s containing %q; got:\n%v\nfor:\n%s", at, phrase, err, numbered(yaml))
			}
		}
		if len(errs.List) != len(wants) {
			t.Errorf("%d errors, want %d:\n%v\nfor:\n%s", len(errs.List), len(wants), err, numbered(yaml))
		}
	}
	feat := func(lines ...string) string { return header + strings.Join(lines, "\n") + "\n" }
	with := func(features, services string) string { return feat(features) + "services:\n" + services + "\n" }

	// The document.
	f("", `1 the file is empty`)
	f("# just a comment\n", `1 the file is empty`)
	f("- a\n- b\n", `1 must be a mapping with the keys project, entities, sources, views and services; found a list`)
	f("hello\n", `1 found a string`)
	f(feat(`      n: {agg: count}`)+"---\nproject: q\n", `16 one YAML document`)
	f("project: p\nentities: [a\nsources: {}\n", `3 YAML syntax error`)
	f("project: p\n", `1 missing key "entities"`, `1 missing key "sources"`, `1 missing key "views"`)
	f(strings.Replace(feat(`      n: {agg: count}`), "project: p\n", "", 1)+"\n", `1 missing key "project"`)
	f(feat(`      n: {agg: count}`)+"view: {}\n", `15 unknown key "view" in the project file (did you mean "views"? allowed: entities, online_store, project, services, sources, views)`)

	// Names and duplicate keys.
	f(strings.Replace(header, "project: p", "project: My-Project", 1)+"      n: {agg: count}\n", `1 project name "My-Project" is not a valid name: use lower-case letters, digits and _, starting with a letter or _ (like "my_project")`)
	f(feat(`      `+strings.Repeat("a", 65)+`: {agg: count}`), `14 is too long: a name has at most 64 characters`)
	f(feat(`      n: {agg: count}`, `      n: {agg: sum, field: dwell_ms}`), `15 duplicate key "n" in features of view "v" (first at line 14)`)
	f(feat(`      n: {agg: count, agg: sum}`), `14 duplicate key "agg" in feature "n" of view "v" (first at line 14)`)
	f(feat(`      n: {agg: count, where: {kind: a, kind: b}}`), `14 duplicate key "kind"`)
	f(strings.Replace(header, "  user: {keys: [user_id]}\n", "  user: {keys: [user_id]}\n  user: {keys: [user_id]}\n", 1)+"      n: {agg: count}\n",
		`4 duplicate key "user" in entities (first at line 3): remove one`)
	f(feat(`      n: &a {agg: count}`, `      m: *a`), `14 anchors and aliases`, `15 anchors and aliases`)
	f(feat(`      n: {agg: !!str count}`), `14 tags`)

	// Entities.
	f(strings.Replace(header, "  user: {keys: [user_id]}", "  user: {keys: []}", 1)+"      n: {agg: count}\n", `3 keys of entity "user" is empty`)
	f(strings.Replace(header, "  user: {keys: [user_id]}", "  user: {keys: [user_id, user_id]}", 1)+"      n: {agg: count}\n", `3 key field "user_id" is listed twice`)
	f(strings.Replace(header, "  user: {keys: [user_id]}", "  user: {keys: user_id}", 1)+"      n: {agg: count}\n", `3 keys of entity "user" must be a list, like [user_id]`)
	f(strings.Replace(header, "  user: {keys: [user_id]}", "  user: {key: [user_id]}", 1)+"      n: {agg: count}\n",
		`3 unknown key "key" in entity "user" (did you mean "keys"? allowed: keys)`, `3 entity "user" has no keys`)
	f(strings.Replace(header, "entities:\n  user: {keys: [user_id]}", "entities: {}", 1)+"      n: {agg: count}\n",
		`2 entities is empty`, `10 entity "user" is not defined (no entitys are defined)`)

	// Sources.
	f(strings.Replace(header, "type: push", "type: kafak", 1)+"      n: {agg: count}\n", `6:11 unknown type "kafak" of source "ev" (did you mean "kafka"? allowed: push, kafka, nats)`)
	f(strings.Replace(header, "type: push", "type: pull", 1)+"      n: {agg: count}\n", `6:11 unknown type "pull" of source "ev" (did you mean "push"? allowed: push, kafka, nats)`)
	f(strings.Replace(header, "    type: push\n", "", 1)+"      n: {agg: count}\n", `5 source "ev" has no type: add type: push`)
	f(strings.Replace(header, "    event_time: ts\n", "", 1)+"      n: {agg: count}\n", `5 source "ev" has no event_time`)
	f(strings.Replace(header, "{user_id: int64,", "{ts: int64, user_id: int64,", 1)+"      n: {agg: count}\n", `8 field "ts" is the event_time of source "ev" (line 7) and must not also be in fields`)
	f(strings.Replace(header, "kind: string", "kind: str", 1)+"      n: {agg: count}\n", `8 unknown type "str" of field "kind" in source "ev" (did you mean "string"? allowed: int64, float64, string, bool)`)
	f(strings.Replace(header, "kind: string", "kind: double", 1)+"      n: {agg: count}\n", `8 (did you mean "float64"?`)
	f(strings.Replace(header, "    fields: {user_id: int64, kind: string, dwell_ms: float64, ok: bool}", "    fields: {}", 1)+"      n: {agg: count}\n",
		`8 fields of source "ev" is empty`, `11 source "ev" has no field "user_id", the key of entity "user"`)
	f(strings.Replace(header, "event_time: ts", "event_time: ts\n    max_future_skew: 2d", 1)+"      n: {agg: count}\n", `8 max_future_skew "2d" is longer than the maximum, 1d`)
	f(strings.Replace(header, "event_time: ts", "event_time: ts\n    max_future_skew: 1 minute", 1)+"      n: {agg: count}\n", `8 max_future_skew "1 minute": write a whole number followed by s, m, h or d, like 1m`)
	f(strings.Replace(header, "event_time: ts", "event_time: ts\n    min_event_time: 1765000000", 1)+"      n: {agg: count}\n", `8 min_event_time "1765000000": write a date, like 2000-01-01 (midnight UTC), or an RFC 3339 time, like 2000-01-01T00:00:00Z`)
	f(strings.Replace(header, "event_time: ts", "event_time: ts\n    min_event_time: 1969-12-31", 1)+"      n: {agg: count}\n", `8 min_event_time "1969-12-31": give a time from 1970-01-01 to 9999-12-31`)
	f(strings.Replace(header, "event_time: ts", "event_time: ts\n    min_event_time:", 1)+"      n: {agg: count}\n", `8 min_event_time of source "ev" is empty: write a value, like 2000-01-01`)
	f(strings.Replace(header, "sources:", "sourcs:", 1)+"      n: {agg: count}\n",
		`4 unknown key "sourcs" in the project file (did you mean "sources"?`, `1 missing key "sources"`, `12 source "ev" is not defined (no sources are defined)`)

	// Source types and the keys each takes.
	f(sourceProject("type: jetstream", "event_time: ts", "fields: {user_id: int64}", "url: nats://a:4222", "stream: S"),
		`6:11 unknown type "jetstream" of source "ev" (did you mean "nats"?`)
	f(sourceProject("event_time: ts", "fields: {user_id: int64}", "brokers: [a:9092]", "topic: t"), `5:3 source "ev" has no type: add type: kafka`)
	f(sourceProject("event_time: ts", "fields: {user_id: int64}", "url: nats://a:4222", "stream: S"), `5:3 source "ev" has no type: add type: nats`)
	f(sourceProject("type: push", "event_time: ts", "fields: {user_id: int64}", "topic: engagements"),
		`9:5 key "topic" is for kafka sources, but source "ev" has type push: remove it, or set type: kafka`)
	f(sourceProject("type: push", "event_time: ts", "fields: {user_id: int64}", "url: nats://a:4222", "durable: d"),
		`9:5 key "url" is for nats sources, but source "ev" has type push: remove it, or set type: nats`,
		`10:5 key "durable" is for nats sources`)
	f(sourceProject("type: push", "event_time: ts", "fields: {user_id: int64}", "dead_letter: {file: x.jsonl}", "start: latest"),
		`9:5 key "dead_letter" is for kafka and nats sources, but source "ev" has type push (its events arrive through the push API): remove it, or set type: kafka or type: nats`,
		`10:5 key "start" is for kafka and nats sources`)
	f(kafkaProject("durable: d", "subject: s"),
		`11:5 key "durable" is for nats sources, but source "ev" has type kafka: use group instead (or set type: nats)`,
		`12:5 key "subject" is for nats sources, but source "ev" has type kafka: use topic instead`)
	f(natsProject("brokers: [a:9092]", "group: g"),
		`11:5 key "brokers" is for kafka sources, but source "ev" has type nats: use url instead (or set type: kafka)`,
		`12:5 key "group" is for kafka sources, but source "ev" has type nats: use durable instead`)
	f(kafkaProject("topik: t"), `11:5 unknown key "topik" in source "ev" (did you mean "topic"? allowed: archive, brokers, dead_letter, event_time, fields, format, group, max_future_skew, max_message_bytes, min_event_time, sasl, session_timeout, start, tls, topic, type)`)
	f(natsProject("subjet: a"), `11:5 unknown key "subjet" in source "ev" (did you mean "subject"? allowed: archive, credentials, dead_letter, durable, event_time, fields, format, max_future_skew, max_message_bytes, min_event_time, password, session_timeout, start, stream, subject, tls, token, type, url, user)`)
	f(sourceProject("type: push", "event_time: ts", "fields: {user_id: int64}", "topc: t"), `9:5 unknown key "topc" in source "ev" (did you mean "topic"? it is a key of kafka sources; allowed for type push: archive, event_time, fields, max_future_skew, min_event_time, type)`)
	f(sourceProject("type: push", "event_time: ts", "fields: {user_id: int64}", "fieldz: {}"), `9:5 unknown key "fieldz" in source "ev" (did you mean "fields"? allowed: archive, event_time, fields, max_future_skew, min_event_time, type)`)

	// Kafka sources.
	f(sourceProject("type: kafka", "event_time: ts", "fields: {user_id: int64}", "topic: t"),
		`5:3 source "ev" of type kafka has no brokers: add brokers: with the host:port of some of the Kafka brokers, like brokers: [kafka-1:9092]`)
	f(sourceProject("type: kafka", "event_time: ts", "fields: {user_id: int64}", "brokers: [a:9092]"),
		`5:3 source "ev" of type kafka has no topic: add topic: with the Kafka topic to read, like topic: ev`)
	f(strings.Replace(kafkaProject(), "brokers: [kafka-1:9092]", "brokers: []", 1), `9:5 brokers of source "ev" is empty: list the host:port of at least one Kafka broker`)
	f(strings.Replace(kafkaProject(), "brokers: [kafka-1:9092]", "brokers: kafka-1:9092", 1), `9:14 brokers of source "ev" must be a list, like [kafka-1:9092, kafka-2:9092]; found a string`)
	f(strings.Replace(kafkaProject(), "brokers: [kafka-1:9092]", "brokers: [kafka-1, kafka-2:0, kafka-3:99999]", 1),
		`9:15 broker "kafka-1" of source "ev": write host:port, like kafka-1:9092`,
		`9:24 broker "kafka-2:0" of source "ev": write host:port`,
		`9:35 broker "kafka-3:99999" of source "ev": write host:port`)
	f(strings.Replace(kafkaProject(), "brokers: [kafka-1:9092]", "brokers: [kafka-1: 9092]", 1), `9:15 broker of source "ev": write host:port with no spaces, like kafka-1:9092`)
	f(strings.Replace(kafkaProject(), "brokers: [kafka-1:9092]", "brokers: [kafka-1:9092, kafka-1:9092]", 1), `9:29 broker "kafka-1:9092" is listed twice in source "ev" (first at line 9): remove one`)
	f(strings.Replace(kafkaProject(), "topic: engagements", "topic: web clicks", 1), `10:12 topic "web clicks" of source "ev": a Kafka topic name has only letters, digits, '.', '_' and '-', not " ": write it like "web_clicks"`)
	f(strings.Replace(kafkaProject(), "topic: engagements", "topic: ..", 1), `10:12 topic ".." of source "ev": a Kafka topic name cannot be . or ..`)
	f(strings.Replace(kafkaProject(), "topic: engagements", `topic: ""`, 1), `10:12 topic "" of source "ev": a Kafka topic name cannot be empty`)
	f(strings.Replace(kafkaProject(), "topic: engagements", "topic: "+strings.Repeat("t", 250), 1), `10:12 a Kafka topic name has at most 249 characters: shorten it`)
	f(strings.Replace(natsProject(), "stream: ENGAGEMENTS", "stream: "+strings.Repeat("S", 256), 1), `10:13 a JetStream name has at most 255 characters: shorten it`)
	f(strings.Replace(kafkaProject(), "topic: engagements", "topic:", 1), `10:5 topic of source "ev" is empty: write a value, like ev`)
	f(kafkaProject("group: ranking clicks"), `11:12 group "ranking clicks" of source "ev": a consumer group name has no spaces or control characters: write it like "ranking-clicks", or leave group out for the default, kiln-p-ev`)

	// Keys of kafka and nats sources.
	f(kafkaProject("format: avro"), `11:13 unknown format "avro" of source "ev" (allowed: json, one event object per message): write format: json, or leave format out`)
	f(natsProject("format: JSON"), `11:13 unknown format "JSON" of source "ev" (did you mean "json"?`)
	f(kafkaProject("start: beginning"), `11:12 unknown start "beginning" of source "ev" (did you mean "earliest"? allowed: earliest, to read all the topic still holds, or latest`)
	f(natsProject("start: lates"), `11:12 unknown start "lates" of source "ev" (did you mean "latest"? allowed: earliest, to read all the stream still holds`)
	f(natsProject("start: [latest]"), `11:12 start of source "ev" must be a single value`)
	f(kafkaProject("max_message_bytes: 0"), `11:24 max_message_bytes "0" of source "ev" must be positive`)
	f(kafkaProject("max_message_bytes: -1KiB"), `11:24 max_message_bytes "-1KiB" of source "ev" must be positive`)
	f(kafkaProject("max_message_bytes: 1MB"), `11:24 max_message_bytes "1MB" of source "ev": write a whole number of bytes, or a whole number followed by KiB or MiB, like 1MiB`)
	f(natsProject("max_message_bytes: 1.5MiB"), `11:24 like 1536KiB`)
	f(natsProject("max_message_bytes: 10 kb"), `11:24 like 10KiB`)
	f(kafkaProject("max_message_bytes: 65MiB"), `11:24 max_message_bytes "65MiB" of source "ev" is more than the maximum, 64MiB`)
	f(kafkaProject("max_message_bytes: 99999999999999999999"), `11:24 is more than the maximum, 64MiB`)

	// Dead letters.
	f(kafkaProject("dead_letter: {}"), `11:5 dead_letter of source "ev" is empty: write one of topic: or file:, like dead_letter: {topic: ev-dead}, or remove dead_letter for the default file, dead-letter/ev.jsonl under the server's --data directory`)
	f(natsProject("dead_letter:"), `11:5 dead_letter of source "ev" is empty: write one of subject: or file:, like dead_letter: {subject: ev.dead}`)
	f(kafkaProject("dead_letter: dead.jsonl"), `11:18 dead_letter of source "ev" must be a mapping of key: value, like {topic: ev-dead}; found a string`)
	f(kafkaProject("dead_letter: {topic: dead, file: dead.jsonl}"), `11:32 dead_letter of source "ev" has both topic and file: keep one of them`)
	f(kafkaProject("dead_letter: {subject: dead}"), `11:19 key "subject" of dead_letter of source "ev" is for nats sources: a kafka source sends its dead letters to a topic: or a file:`)
	f(natsProject("dead_letter: {topic: dead}"), `11:19 key "topic" of dead_letter of source "ev" is for kafka sources: a nats source sends its dead letters to a subject: or a file:`)
	f(natsProject("dead_letter: {fil: dead.jsonl}"), `11:19 unknown key "fil" in dead_letter of source "ev" (did you mean "file"? allowed: file, subject)`)
	f(kafkaProject("dead_letter: {topic: engagements}"), `11:26 dead_letter topic "engagements" of source "ev" is the topic it reads: its dead letters would be read again; use another topic, like engagements-dead`)
	f(kafkaProject("dead_letter: {topic: dead letters}"), `11:26 dead_letter topic "dead letters" of source "ev": a Kafka topic name has only letters`)
	f(natsProject("dead_letter: {subject: dead.>}"), `11:28 dead_letter subject "dead.>" of source "ev": dead letters are published to this subject, so it cannot hold the wildcards * or >`)
	f(natsProject("subject: engagements.*", "dead_letter: {subject: engagements.dead}"), `12:28 dead_letter subject "engagements.dead" of source "ev" matches its filter subject "engagements.*": its dead letters would be read again`)
	f(natsProject("dead_letter: {file: dead/}"), `11:25 dead_letter file "dead/" of source "ev" is not a file name: write the path of a file, like dead-letter/ev.jsonl`)

	// NATS sources.
	f(sourceProject("type: nats", "event_time: ts", "fields: {user_id: int64}", "stream: S"),
		`5:3 source "ev" of type nats has no url: add url: with the NATS server, like url: nats://127.0.0.1:4222`)
	f(sourceProject("type: nats", "event_time: ts", "fields: {user_id: int64}", "url: nats://a:4222"),
		`5:3 source "ev" of type nats has no stream: add stream: with the name of the JetStream stream to read, like stream: EV`)
	f(strings.Replace(natsProject(), "url: nats://127.0.0.1:4222", "url: localhost:4222", 1), `9:10 url "localhost:4222" of source "ev": write nats://host:port, like nats://localhost:4222`)
	f(strings.Replace(natsProject(), "url: nats://127.0.0.1:4222", "url: nats://localhost", 1), `9:10 url "nats://localhost" of source "ev": write nats://host:port, like nats://localhost:4222`)
	f(strings.Replace(natsProject(), "url: nats://127.0.0.1:4222", "url: tls://nats-1:4443", 1), `9:10 like nats://nats-1:4443`)
	f(strings.Replace(natsProject(), "url: nats://127.0.0.1:4222", "url: nats://kiln:secret@nats-1:4222/x", 1), `9:10 url "nats://kiln:xxxxx@nats-1:4222/x" of source "ev": write nats://host:port, like nats://nats-1:4222`)
	f(strings.Replace(natsProject(), "stream: ENGAGEMENTS", "stream: engagements.v1", 1), `10:13 stream "engagements.v1" of source "ev": a JetStream name has no spaces, '.', '*', '>', '/' or '\', and "." is one: write it like "engagements_v1"`)
	f(strings.Replace(natsProject(), "stream: ENGAGEMENTS", "stream: a/b", 1), `10:13 and "/" is one: write it like "a_b"`)
	f(natsProject("durable: kiln consumer"), `11:14 durable "kiln consumer" of source "ev": a JetStream name has no spaces`)
	f(natsProject("subject: engagements..web"), `11:14 subject "engagements..web" of source "ev": a subject is tokens separated by single dots`)
	f(natsProject("subject: engagements.>.web"), `11:14 subject "engagements.>.web" of source "ev": > matches the rest of a subject and must be its last token`)
	f(natsProject("subject: engagements*"), `11:14 a wildcard is a whole token: write engagements.* or engagements.>, not engagements*`)
	f(natsProject("subject: *.engagements"), `11:14 subject of source "ev": YAML reads a value that starts with * as an alias: quote the subject, like "*.engagements"`)
	f(natsProject("subject: >"), `11:14 subject of source "ev": YAML reads a value that starts with > or | as a block of text: quote the subject`)

	// What streaming sources must not share. The keys of the second
	// source, ev2, start at line 7 + the number of keys of ev.
	two := func(a, b []string) string {
		return strings.Replace(sourceProject(a...), "views:", "  ev2:\n    "+strings.Join(b, "\n    ")+"\nviews:", 1)
	}
	kafkaKeys := []string{"type: kafka", "event_time: ts", "fields: {user_id: int64}", "brokers: [kafka-1:9092]", "topic: engagements"}
	natsKeys := []string{"type: nats", "event_time: ts", "fields: {user_id: int64}", "url: nats://127.0.0.1:4222", "stream: ENGAGEMENTS"}
	plus := func(keys []string, extra ...string) []string { return append(append([]string(nil), keys...), extra...) }
	f(two(plus(kafkaKeys, "group: g"), plus(kafkaKeys, "group: g")),
		`18:12 source "ev2" reads topic "engagements" in consumer group "g", as source "ev" does (line 5): the two would share the topic's partitions and each see only part of its events; set another group: for one of them`)
	f(two(plus(natsKeys, "durable: d"), plus(natsKeys, "durable: d")),
		`18:14 source "ev2" reads stream "ENGAGEMENTS" with durable consumer "d", as source "ev" does (line 5): the two would share its messages and each see only part of them; set another durable: for one of them`)
	f(two(plus(kafkaKeys, "dead_letter: {file: dead.jsonl}"), plus(natsKeys, "dead_letter: {file: ./dead.jsonl}")),
		`18:25 dead_letter file "./dead.jsonl" of source "ev2" is also the dead_letter file of source "ev" (line 11): give each source its own file`)
	// A type in error does not bring errors about the keys of the types.
	f(sourceProject("type: kafak", "event_time: ts", "fields: {user_id: int64}", "brokers: [a:9092]", "topic: t", "url: x"), `6:11 unknown type "kafak"`)

	// Views.
	f(strings.Replace(header, "entity: user", "entity: usr", 1)+"      n: {agg: count}\n", `11 entity "usr" is not defined (did you mean "user"? defined: user)`)
	f(strings.Replace(header, "source: ev", "source: events", 1)+"      n: {agg: count}\n", `12 source "events" is not defined (did you mean "ev"? defined: ev)`)
	f(strings.Replace(header, "    entity: user\n", "", 1)+"      n: {agg: count}\n", `10 view "v" has no entity: add entity: with one of the entities (user)`)
	f(strings.Replace(header, "{keys: [user_id]}", "{keys: [user_id, country]}", 1)+"      n: {agg: count}\n", `11 source "ev" has no field "country", the key of entity "user": add country: int64`)
	f(strings.Replace(header, "{keys: [user_id]}", "{keys: [dwell_ms]}", 1)+"      n: {agg: count}\n", `11 key field "dwell_ms" of entity "user" has type float64 in source "ev": a key field must be int64 or string`)
	f(strings.Replace(header, "{keys: [user_id]}", "{keys: [ts]}", 1)+"      n: {agg: count}\n", `11 key field "ts" of entity "user" is the event_time of source "ev"`)
	f(strings.TrimSuffix(header, "    features:\n")+"\n", `10 view "v" has no features`)
	f(header+"\n", `13 features of view "v" is empty`)
	f(feat(`      n: {agg: count, windows: [1h]}`, `      n_1h: {agg: count}`), `15 served name "v:n_1h" of feature "n_1h" is also the served name of feature "n" window 1h: rename one`)
	f(feat(`      n: {agg: count, windws: [1h]}`), `14 unknown key "windws" in feature "n" of view "v" (did you mean "windows"? allowed: agg, field, where, windows)`)
	f(feat(`      n:`), `14 feature "n" of view "v" is empty`)
	f(feat(`      n: [count]`), `14 feature "n" of view "v" must be a mapping`)

	// Aggregations and fields.
	f(feat(`      n: {windows: [1h]}`), `14 feature "n" of view "v" has no agg: add agg: with one of count, sum, mean, min, max, last`)
	f(feat(`      n: {agg: avg, field: dwell_ms}`), `14 unknown agg "avg" in feature "n" of view "v" (did you mean "mean"? allowed: count, sum, mean, min, max, last)`)
	f(feat(`      n: {agg: coutn}`), `14 (did you mean "count"?`)
	f(feat(`      n: {agg: count, field: dwell_ms}`), `14 count counts events; remove field, or use sum`)
	f(feat(`      n: {agg: mean}`), `14 agg mean needs a field: add field: with one of the numeric fields of source "ev" (user_id, dwell_ms)`)
	f(feat(`      n: {agg: last}`), `14 agg last needs a field: add field: with one of the fields of source "ev" (user_id, kind, dwell_ms, ok)`)
	f(feat(`      n: {agg: sum, field: kind}`), `14 sum needs a numeric field (int64 or float64) but "kind" is string`)
	f(feat(`      n: {agg: max, field: ok}`), `14 max needs a numeric field (int64 or float64) but "ok" is bool`)
	f(feat(`      n: {agg: min, field: dwell}`), `14 field "dwell" is not a field of source "ev" (did you mean "dwell_ms"? fields: user_id, kind, dwell_ms, ok)`)
	f(feat(`      n: {agg: last, field: ts}`), `14 "ts" is the event time of source "ev", not a field to aggregate`)
	f(feat(`      n: {agg: last, field: kind, windows: [1h]}`), `14 last has no window: remove windows`)

	// Windows.
	f(feat(`      n: {agg: count, windows: [7days]}`), `14 window "7days": write a whole number followed by s, m, h or d, like 7d`)
	f(feat(`      n: {agg: count, windows: [2weeks]}`), `14 like 14d`)
	f(feat(`      n: {agg: count, windows: [1h30m]}`), `14 like 90m`)
	f(feat(`      n: {agg: count, windows: [1.5h]}`), `14 like 90m`)
	f(feat(`      n: {agg: count, windows: [1H]}`), `14 like 1h`)
	f(feat(`      n: {agg: count, windows: [60]}`), `14 window "60": write a whole number followed by s, m, h or d`)
	f(feat(`      n: {agg: count, windows: [01h]}`), `14 window "01h": write the number without leading zeros, like 1h`)
	f(feat(`      n: {agg: count, windows: [0m]}`), `14 window "0m": a window must be at least 1m long`)
	f(feat(`      n: {agg: count, windows: [30s]}`), `14 window "30s" is shorter than the shortest window, 1m`)
	f(feat(`      n: {agg: count, windows: [401d]}`), `14 window "401d" is longer than the longest window, 400d`)
	f(feat(`      n: {agg: count, windows: [99999999999999999999d]}`), `14 is longer than the longest window, 400d`)
	f(feat(`      n: {agg: count, windows: [24h, 1d]}`), `14 window 1d is the same length as window 24h (line 14)`)
	f(feat(`      n: {agg: count, windows: [1h, 1h]}`), `14 window 1h is listed twice`)
	f(feat(`      n: {agg: count, windows: []}`), `14 windows of feature "n" of view "v" is empty: list at least one window, like [1h, 24h], or remove windows`)
	f(feat(`      n: {agg: count, windows: 1h}`), `14 windows of feature "n" of view "v" must be a list`)
	f(feat(`      n:`, `        agg: count`, `        windows:`, `          - 1h`, `          - [2h]`), `18 window of feature "n" of view "v" must be a single value`)

	// Filters.
	f(feat(`      n: {agg: count, where: {knd: view}}`), `14 where field "knd" is not a field of source "ev" (did you mean "kind"?`)
	f(feat(`      n: {agg: count, where: {ts: 5}}`), `14 cannot filter on "ts", the event time`)
	f(feat(`      n: {agg: count, where: {user_id: abc}}`), `14 a string is not a int64 value: write a whole number`)
	f(feat(`      n: {agg: count, where: {user_id: "5"}}`), `14 "5" is a string but the field is int64: write the number without quotes`)
	f(feat(`      n: {agg: count, where: {user_id: 1.5}}`), `14 a number is not a int64 value`)
	f(feat(`      n: {agg: count, where: {user_id: 9223372036854775808}}`), `14 9223372036854775808 is out of range for int64`)
	f(feat(`      n: {agg: count, where: {user_id: -9223372036854775809}}`), `14 -9223372036854775809 is out of range for int64`)
	f(feat(`      n: {agg: count, where: {dwell_ms: .inf}}`), `14 .inf is not a finite number`)
	f(feat(`      n: {agg: count, where: {dwell_ms: fast}}`), `14 a string is not a float64 value`)
	f(feat(`      n: {agg: count, where: {ok: 1}}`), `14 a number is not a bool value: write true or false`)
	f(feat(`      n: {agg: count, where: {kind: [like, like]}}`), `14 value "like" is listed twice`)
	f(feat(`      n: {agg: count, where: {kind: []}}`), `14 the list of values is empty`)
	f(feat(`      n: {agg: count, where: {kind: }}`), `14 no value`)
	f(feat(`      n: {agg: count, where: {kind: [a, null]}}`), `14 null is not a value a filter can match`)
	f(feat(`      n: {agg: count, where: {kind: {a: b}}}`), `14 a mapping is not a string value`)
	f(feat(`      n: {agg: count, where: {}}`), `14 where of feature "n" of view "v" is empty`)
	f(feat(`      n: {agg: count, where: [kind]}`), `14 where of feature "n" of view "v" must be a mapping`)

	// Services.
	okFeat := `      n: {agg: count, windows: [1h, 24h]}`
	f(with(okFeat, `  s: {views: [w]}`), `16 view "w" is not defined (defined: v)`)
	f(with(okFeat, `  s: {views: [v, v]}`), `16 view "v" is listed twice in service "s"`)
	f(with(okFeat, `  s: {features: [v:n_2h]}`), `16 view "v" serves no "n_2h" (did you mean "v:n_1h"? its served names: n_1h, n_24h)`)
	f(with(okFeat, `  s: {features: [w:n_1h]}`), `16 view "w" is not defined (defined: v)`)
	f(with(okFeat, `  s: {features: [n_1h]}`), `16 feature "n_1h" in service "s": write view:feature_window, like v:n_1h`)
	f(with(okFeat, `  s: {features: [v:n_1h, v:n_1h]}`), `16 feature "v:n_1h" is listed twice in service "s" (first at line 16)`)
	f(with(okFeat, "  s:\n    views: [v]\n    features: [v:n_24h]"), `18 feature "v:n_24h" is listed twice in service "s" (first via view "v" at line 17)`)
	f(with(okFeat, "  s:\n    features:\n      - v: n_1h"), `18 write each served name as view:feature_window with no spaces`)
	f(with(okFeat, `  s: {}`), `16 service "s" lists no features`)
	f(with(okFeat, `  s: {views: []}`), `16 service "s" lists no features`)
	f(with(okFeat, `  s: {view: [v]}`), `16 unknown key "view" in service "s" (did you mean "views"? allowed: features, views)`, `16 service "s" lists no features`)
	f(with(okFeat, `  s: [v]`), `16 service "s" must be a mapping`)
}

func TestParseReportsAllErrors(t *testing.T) {
	yaml := strings.Replace(header, "entity: user", "entity: usr", 1) +
		"      n: {agg: count, windows: [7days]}\n" +
		"      m: {agg: sum, field: kind}\n"
	_, err := projectfile.Parse("t.yaml", []byte(yaml))
	var errs *projectfile.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v, want *Errors", err)
	}
	want := []string{
		`t.yaml:11:13: entity "usr" is not defined`,
		`t.yaml:14:33: window "7days": write a whole number followed by s, m, h or d, like 7d`,
		`t.yaml:15:28: feature "m" of view "v": sum needs a numeric field`,
	}
	if len(errs.List) != len(want) {
		t.Fatalf("%d errors, want %d:\n%v", len(errs.List), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(errs.List[i].Error(), w) {
			t.Errorf("error %d is %q, want it to start with %q", i, errs.List[i], w)
		}
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != 3 {
		t.Errorf("Error() has %d lines, want 3:\n%v", len(lines), err)
	}
}

func TestParseDuration(t *testing.T) {
	for s, want := range map[string]time.Duration{"0s": 0, "90s": 90 * time.Second, "5m": 5 * time.Minute, "24h": day, "400d": 400 * day} {
		if got, err := projectfile.ParseDuration(s); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "h", "1", "1w", "1.5h", "-1h", "1h30m", "01h", " 1h", "1 h"} {
		if _, err := projectfile.ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", s)
		}
	}
}

// TestParseMutations checks that Parse neither panics nor returns a
// half-resolved project on many small edits of valid files; FuzzParse
// explores further.
func TestParseMutations(t *testing.T) {
	seeds := []string{validFile, string(examples.FeedProject), streamFile}
	vocab := []string{"", " ", ":", "-", "[", "]", "{", "}", ",", "&a", "*a", "!!str", "<<", "?", "null", "~",
		"true", "1", "-1", "1.5", ".inf", "0x10", "99999999999999999999", "user", "post_id", "ts", "kind", "view",
		"count", "sum", "last", "windows", "where", "field", "1h", "0s", "401d", "views", "features", "entity",
		"source", "int64", "bool", "\"x\"", "|\n  z", "\n", "\n  ", "\t", "#", "\n---\n", "user_engagement:views_1h",
		"push", "kafka", "nats", "topic", "subject", "dead_letter", "file", "a:9092", "nats://a:4222", "*", ">", "a.>", "1MiB", "65MiB"}
	r := rand.New(rand.NewSource(1))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for range n {
		s := seeds[r.Intn(len(seeds))]
		for k := 1 + r.Intn(3); k > 0; k-- {
			switch r.Intn(4) {
			case 0: // replace a word
				words := strings.Fields(s)
				s = strings.Replace(s, words[r.Intn(len(words))], vocab[r.Intn(len(vocab))], 1)
			case 1: // delete a line
				lines := strings.Split(s, "\n")
				i := r.Intn(len(lines))
				s = strings.Join(append(lines[:i:i], lines[i+1:]...), "\n")
			case 2: // duplicate a line
				lines := strings.Split(s, "\n")
				i := r.Intn(len(lines))
				s = strings.Join(append(lines[:i+1:i+1], lines[i:]...), "\n")
			case 3: // insert a token
				i := r.Intn(len(s) + 1)
				s = s[:i] + vocab[r.Intn(len(vocab))] + s[i:]
			}
		}
		checkParse(t, []byte(s))
	}
}

// checkParse parses data and checks the result is either a resolved
// project or an *Errors with positions.
func checkParse(t *testing.T, data []byte) {
	t.Helper()
	p, err := projectfile.Parse("x.yaml", data)
	if err != nil {
		var errs *projectfile.Errors
		if !errors.As(err, &errs) || len(errs.List) == 0 || p != nil {
			t.Fatalf("Parse returned %v, %T %v for:\n%s", p, err, err, data)
		}
		for _, e := range errs.List {
			if e.Line <= 0 || e.Msg == "" {
				t.Fatalf("error without a line: %v for:\n%s", e, data)
			}
		}
		return
	}
	if p.Name == "" || len(p.Entities) == 0 || len(p.Sources) == 0 || len(p.Views) == 0 {
		t.Fatalf("incomplete project %+v for:\n%s", p, data)
	}
	for _, v := range p.Views {
		if v.Entity == nil || v.Source == nil || len(v.Features) == 0 {
			t.Fatalf("view %q is not resolved for:\n%s", v.Name, data)
		}
		for _, f := range v.Features {
			if f.Agg == 0 || len(f.Windows) != len(f.WindowNames) || (f.Agg == definition.Count) != (f.Field == "") {
				t.Fatalf("feature %+v of view %q is not checked for:\n%s", f, v.Name, data)
			}
		}
	}
	for _, s := range p.Services {
		if len(s.Features) == 0 {
			t.Fatalf("service %q is empty for:\n%s", s.Name, data)
		}
	}
	for _, src := range p.Sources {
		if problem := checkStream(src); problem != "" {
			t.Fatalf("source %q: %s; stream %+v for:\n%s", src.Name, problem, src.Stream, data)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(validFile))
	f.Add(examples.FeedProject)
	f.Add([]byte(header + "      n: {agg: count, where: {kind: [a, b]}, windows: [1h, 1d]}\n"))
	f.Add([]byte("project: p\nservices: {s: {features: [a:b, c]}}\n"))
	f.Add([]byte("a: &x [1, 2]\nb: *x\n<<: {c: 1}\n? d\n: e\n"))
	f.Add([]byte(streamFile))
	f.Add([]byte(kafkaProject("group: g", "start: latest", "max_message_bytes: 1MiB", "dead_letter: {topic: dead}")))
	f.Add([]byte(natsProject("subject: a.*.>", "durable: d", "dead_letter: {subject: dead.a}")))
	f.Add([]byte(kafkaProject("sasl: {mechanism: PLAIN, user: u, password: {env: HOME}}", "tls: {server_name: k, insecure_skip_verify: true}")))
	f.Add([]byte(natsProject("user: u", "password: {file: /dev/null}", "token: {env: PATH}", "tls: true")))
	f.Add([]byte("online_store: {type: redis, addrs: [a:1], username: u, password: {env: HOME}, tls: false, durability: replicated, replicas: 2, replication_timeout: 5ms}\n" + validFile))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		checkParse(t, data)
	})
}

func names[T any](list []T, name func(T) string) string {
	var s []string
	for _, x := range list {
		s = append(s, name(x))
	}
	return strings.Join(s, " ")
}

func refNames(refs []definition.FeatureRef) string {
	return names(refs, definition.FeatureRef.Name)
}

func checkWhere(t *testing.T, where []definition.Filter, want string) {
	t.Helper()
	got := names(where, func(f definition.Filter) string { return f.Field + "=" + fmt.Sprint(f.Values) })
	if got != want {
		t.Errorf("where %s, want %s", got, want)
	}
}

func numbered(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = fmt.Sprintf("%3d  %s", i+1, lines[i])
	}
	return strings.Join(lines, "\n")
}

func TestOnlineStore(t *testing.T) {
	p, err := projectfile.Parse("kiln.yaml", []byte(validFile))
	if err != nil {
		t.Fatal(err)
	}
	if p.OnlineStore.Type != definition.Pebble || p.OnlineStore.Addrs != nil {
		t.Fatalf("default online store %+v, want pebble", p.OnlineStore)
	}
	p, err = projectfile.Parse("kiln.yaml", []byte("online_store: {type: redis, addrs: [127.0.0.1:7000, redis-1:7001], timeout: 500ms, max_staleness: 2s}\n"+validFile))
	if err != nil {
		t.Fatal(err)
	}
	want := definition.OnlineStore{Type: definition.Redis, Addrs: []string{"127.0.0.1:7000", "redis-1:7001"}, Timeout: 500 * time.Millisecond, MaxStaleness: 2 * time.Second}
	if fmt.Sprint(p.OnlineStore) != fmt.Sprint(want) {
		t.Fatalf("online store %+v, want %+v", p.OnlineStore, want)
	}
	f := func(store string, wants ...string) {
		t.Helper()
		_, err := projectfile.Parse("kiln.yaml", []byte(store+"\n"+validFile))
		if err == nil {
			t.Fatalf("%s: accepted", store)
		}
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", store, err, w)
			}
		}
	}
	f("online_store: {type: redis}", "kiln.yaml:1:", "needs addrs")
	f("online_store: {type: reddis, addrs: [a:1]}", `unknown online_store type "reddis"`, `did you mean "redis"`)
	f("online_store: {addrs: [a:1]}", "type pebble is embedded and takes no addrs")
	f("online_store: {type: redis, addrs: [localhost]}", `address "localhost" of online_store: write host:port`)
	f("online_store: {type: redis, addrs: [a:1], timeout: forever}", `timeout "forever"`)
	f("online_store: {type: redis, adrs: [a:1]}", `unknown key "adrs"`)
}
