package projectfile

import (
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/kiln-dev/kiln/internal/definition"
)

func (l *loader) project(data []byte) *definition.Project {
	f, err := parseYAML(data)
	if err != nil {
		l.syntaxError(err)
		return nil
	}
	var docs []*ast.DocumentNode
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		l.errorf(pos{1, 1}, "the file is empty: a project file is a mapping with the keys project, entities, sources, views and services (see docs/definitions.md)")
		return nil
	}
	if len(docs) > 1 {
		l.errorf(posOf(docs[1].Body), "a project file holds one YAML document: remove this second document (and the --- before it), or move it to its own file")
	}
	body := docs[0].Body
	if _, isMap := body.(*ast.MappingNode); !isMap {
		if _, isMV := body.(*ast.MappingValueNode); !isMV {
			l.errorf(posOf(body), "a project file must be a mapping with the keys project, entities, sources, views and services; found %s", describe(body))
			return nil
		}
	}
	entries, ok := l.mapping(body, posOf(body), "the project file", "project: feed")
	if !ok {
		return nil
	}
	top := l.keys(entries, "the project file", "project", "online_store", "entities", "sources", "views", "services")
	start := posOf(body)

	p := &definition.Project{}
	// The sections a project must have, in the order they are read: views
	// resolve the entities and sources before them, services the views.
	for _, sec := range []struct {
		key, advice string
		read        func(*definition.Project, keyValue)
	}{
		{"project", "name the project, like project: feed", l.projectName},
		{"entities", "declare the kinds of keys, like entities: {user: {keys: [user_id]}}", l.entities},
		{"sources", "declare where events come from, like sources: {engagements: {type: push, event_time: ts, fields: {user_id: int64}}}", l.sources},
		{"views", "declare at least one feature view (see docs/definitions.md)", l.views},
	} {
		if e, ok := top[sec.key]; ok {
			sec.read(p, e)
		} else {
			l.errorf(start, "missing key %q: %s", sec.key, sec.advice)
		}
	}
	if e, ok := top["services"]; ok {
		l.services(p, e)
	}
	if e, ok := top["online_store"]; ok {
		l.onlineStore(p, e)
	}
	return p
}

// projectName reads project: the project's name.
func (l *loader) projectName(p *definition.Project, e keyValue) {
	if name, _, ok := l.nameValue(e.val, e.kpos, "project name", "feed"); ok {
		p.Name = name
	}
}

// onlineStore reads online_store: {type: redis, addrs: [host:port, ...]}.
func (l *loader) onlineStore(p *definition.Project, e keyValue) {
	const example = "{type: redis, addrs: [127.0.0.1:6379]}"
	entries, ok := l.mapping(e.val, e.kpos, "online_store", example)
	if !ok {
		return
	}
	m := l.keys(entries, "online_store", "type", "addrs", "timeout", "max_staleness",
		"username", "password", "tls", "durability", "replicas", "replication_timeout")
	if te, ok := m["type"]; ok {
		if t, tp, ok := l.scalar(te.val, te.kpos, "type of online_store", "redis"); ok {
			st, ok := definition.ParseStoreType(t)
			if !ok {
				l.errorf(tp, "unknown online_store type %q (%sallowed: %s)", clip(t), didYouMean(t, strings.Split(definition.OnlineStoreTypes, ", ")), definition.OnlineStoreTypes)
				return
			}
			p.OnlineStore.Type = st
		}
	}
	if ae, ok := m["addrs"]; ok {
		items, ok := l.list(ae.val, "addrs of online_store", "[127.0.0.1:6379]")
		if ok {
			for _, it := range items {
				a, ap, ok := l.hostPort(it, ae.kpos, "address of online_store", "127.0.0.1:6379")
				if !ok {
					continue
				}
				if host, port, found := strings.Cut(a, ":"); !found || host == "" || !isIntText(port) {
					l.errorf(ap, "address %q of online_store: write host:port, like 127.0.0.1:6379", clip(a))
					continue
				}
				p.OnlineStore.Addrs = append(p.OnlineStore.Addrs, a)
			}
		}
	}
	for _, k := range []struct {
		key string
		dst *time.Duration
	}{{"timeout", &p.OnlineStore.Timeout}, {"max_staleness", &p.OnlineStore.MaxStaleness}, {"replication_timeout", &p.OnlineStore.ReplicationTimeout}} {
		if de, ok := m[k.key]; ok {
			s, sp, ok := l.scalar(de.val, de.kpos, k.key+" of online_store", "2s")
			if !ok {
				continue
			}
			d, err := time.ParseDuration(s)
			if err != nil || d < time.Millisecond || d > time.Hour {
				l.errorf(sp, "%s %q of online_store: write a duration between 1ms and 1h, like 2s or 500ms", k.key, clip(s))
				continue
			}
			*k.dst = d
		}
	}
	l.redisAccess(&p.OnlineStore, m)
	switch {
	case p.OnlineStore.Type == definition.Redis && len(p.OnlineStore.Addrs) == 0:
		l.errorf(e.kpos, "online_store of type redis needs addrs: list the Redis (or Redis Cluster) addresses, like %s", example)
	case p.OnlineStore.Type == definition.Pebble && len(p.OnlineStore.Addrs) > 0:
		l.errorf(e.kpos, "online_store of type pebble is embedded and takes no addrs: remove addrs, or set type: redis")
	}
	if p.OnlineStore.Type == definition.Pebble {
		for _, k := range []string{"username", "password", "tls", "durability", "replicas", "replication_timeout"} {
			if ke, ok := m[k]; ok {
				l.errorf(ke.kpos, "online_store of type pebble is embedded and takes no %s: remove it, or set type: redis", k)
			}
		}
	}
}

// redisAccess reads how Kiln reaches Redis and when a write is
// acknowledged: username, password, tls, durability, replicas and
// replication_timeout of online_store.
func (l *loader) redisAccess(o *definition.OnlineStore, m map[string]keyValue) {
	if ue, ok := m["username"]; ok {
		if u, _, ok := l.scalar(ue.val, ue.kpos, "username of online_store", "kiln"); ok {
			o.Username = u
		}
	}
	if pe, ok := m["password"]; ok {
		if s, ok := l.secret(pe, "password of online_store", "REDIS_PASSWORD"); ok {
			o.Password = s
		}
	}
	if te, ok := m["tls"]; ok {
		o.TLS = l.tlsBlock(te, "online_store")
	}
	if de, ok := m["durability"]; ok {
		if d, dp, ok := l.scalar(de.val, de.kpos, "durability of online_store", "replicated"); ok {
			if v, ok := definition.ParseDurability(d); ok {
				o.Durability = v
			} else {
				l.errorf(dp, "unknown durability %q of online_store (%sallowed: primary, acknowledged once the master has the write, or replicated, once a replica has it too)", clip(d), didYouMean(d, strings.Split(definition.Durabilities, ", ")))
			}
		}
	}
	if re, ok := m["replicas"]; ok {
		if r, rp, ok := l.scalar(re.val, re.kpos, "replicas of online_store", "1"); ok {
			n, err := strconv.Atoi(r)
			if err != nil || n < 1 || n > replicasMax {
				l.errorf(rp, "replicas %q of online_store: write how many replicas must confirm each write, a whole number from 1 to %d", clip(r), replicasMax)
			} else {
				o.Replicas = n
			}
		}
	}
	if o.Durability != definition.DurabilityReplicated {
		for _, k := range []string{"replicas", "replication_timeout"} {
			if ke, ok := m[k]; ok {
				l.errorf(ke.kpos, "%s of online_store applies only with durability: replicated: add durability: replicated, or remove %s", k, k)
			}
		}
		return
	}
	if o.Replicas == 0 {
		o.Replicas = definition.DefaultReplicas
	}
	if o.ReplicationTimeout == 0 {
		o.ReplicationTimeout = definition.DefaultReplicationTimeout
	}
}

// replicasMax bounds replicas of online_store: more replicas than any
// Redis deployment runs per master is a typo.
const replicasMax = 16

func (l *loader) entities(p *definition.Project, e keyValue) {
	const example = "{user: {keys: [user_id]}}"
	entries, ok := l.filledMapping(e.val, e.kpos, "entities", example, "declare at least one entity, like entities: "+example)
	if !ok {
		return
	}
	for _, ee := range entries {
		ent := &definition.Entity{Name: ee.key}
		p.Entities = append(p.Entities, ent)
		what, fields, ok := l.declaration(ee, "entity", "{keys: [user_id]}")
		if !ok {
			continue
		}
		m := l.keys(fields, what, "keys")
		ke, ok := l.need(m, "keys", ee.kpos, what, " with its key fields, like {keys: ["+ee.key+"_id]}")
		if !ok {
			continue
		}
		items, ok := l.filledList(ke.val, ke.kpos, "keys of "+what, "[user_id]", "list at least one key field, like ["+ee.key+"_id]")
		if !ok {
			continue
		}
		seen := map[string]pos{}
		for _, it := range items {
			k, kp, ok := l.nameValue(it, ke.kpos, "key field of "+what, "user_id")
			if ok && l.firstListing(seen, "key field", k, kp, what) {
				ent.Keys = append(ent.Keys, k)
			}
		}
	}
}
