package client

import (
	"fmt"
	"strings"

	"github.com/cespare/xxhash/v2"

	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// Selection names the features of a call: a feature service of the project
// file, or a list of served names ("view:feature_window"). Set exactly one.
type Selection struct {
	// Service is the name of a feature service ("ranking").
	Service string
	// Features are served names, in the order the answer's columns take.
	Features []string
}

// Service selects the features of a feature service.
func Service(name string) Selection { return Selection{Service: name} }

// Features selects a list of served feature names.
func Features(names ...string) Selection { return Selection{Features: names} }

func (s Selection) check() error {
	switch {
	case s.Service != "" && len(s.Features) > 0:
		return fmt.Errorf("selection names both service %q and %d features: set one", s.Service, len(s.Features))
	case s.Service == "" && len(s.Features) == 0:
		return fmt.Errorf("no features selected: set Service or Features")
	}
	return nil
}

func (s Selection) String() string {
	if s.Service != "" {
		return "service " + s.Service
	}
	return "features " + strings.Join(s.Features, ",")
}

// Key is the value of one key field of an entity key: Int or String make
// one.
type Key struct {
	field string
	str   string
	num   int64
	isStr bool
}

// Int is the value v of the int64 key field field.
func Int(field string, v int64) Key { return Key{field: field, num: v} }

// String is the value v of the string key field field.
func String(field, v string) Key { return Key{field: field, str: v, isStr: true} }

// Request is one GetFeatures call: which features, and the keys of every
// entity type they are about. Keys are kept in columns, the shape they
// take on the wire, so building a Request allocates per column, not per
// key, and Reset keeps the memory for the next call. The zero value is an
// empty request; set Selection or Prepared, then add keys.
//
// A Request is not safe for concurrent use; Get does not keep it after it
// returns.
type Request struct {
	// Selection names the features, unless Prepared is set.
	Selection
	// Prepared, when set, replaces Selection with a list prepared by the
	// same Client (see Client.Prepare).
	Prepared *Prepared

	ents []*kilnv1.EntityKeys // ents[:n] are in use; the rest are kept for reuse
	n    int
	err  error // the first mistake of Add, reported by Get
}

// Add appends one key of entity, made of one Key per key field of the
// entity (in any order), e.g. Add("session", Int("user_id", 7),
// String("device", "ios")). The first key added decides the replica when
// the client routes by affinity.
func (r *Request) Add(entity string, key ...Key) {
	ek := r.entity(entity)
	for _, k := range key {
		col := r.column(ek, k.field, k.isStr)
		if col == nil {
			continue
		}
		if k.isStr {
			col.StringValues = append(col.StringValues, k.str)
		} else {
			col.IntValues = append(col.IntValues, k.num)
		}
	}
}

// AddInts appends one key of entity per value, for an entity whose key is
// the single int64 field field (or, called once per field, a column of a
// composite key).
func (r *Request) AddInts(entity, field string, values ...int64) {
	if col := r.column(r.entity(entity), field, false); col != nil {
		col.IntValues = append(col.IntValues, values...)
	}
}

// AddStrings is AddInts for a string key field.
func (r *Request) AddStrings(entity, field string, values ...string) {
	if col := r.column(r.entity(entity), field, true); col != nil {
		col.StringValues = append(col.StringValues, values...)
	}
}

// Len is the number of keys added for entity.
func (r *Request) Len(entity string) int {
	for _, ek := range r.ents[:r.n] {
		if ek.Entity == entity && len(ek.Keys) > 0 {
			return columnLen(ek.Keys[0])
		}
	}
	return 0
}

// Reset forgets the keys, keeping the selection and the memory.
func (r *Request) Reset() {
	for _, ek := range r.ents[:r.n] {
		for _, col := range ek.Keys {
			col.IntValues, col.StringValues = col.IntValues[:0], col.StringValues[:0]
		}
	}
	r.n, r.err = 0, nil
}

func (r *Request) entity(name string) *kilnv1.EntityKeys {
	for _, ek := range r.ents[:r.n] {
		if ek.Entity == name {
			return ek
		}
	}
	if r.n == len(r.ents) {
		r.ents = append(r.ents, &kilnv1.EntityKeys{})
	}
	ek := r.ents[r.n]
	r.n++
	ek.Entity = name
	ek.Keys = ek.Keys[:0]
	return ek
}

// column finds or makes the column of field, reusing the memory of an
// earlier call. A column holds ints or strings, never both.
func (r *Request) column(ek *kilnv1.EntityKeys, field string, isStr bool) *kilnv1.KeyColumn {
	var col *kilnv1.KeyColumn
	for _, c := range ek.Keys {
		if c.Field == field {
			col = c
			break
		}
	}
	if col == nil {
		if n := len(ek.Keys); n < cap(ek.Keys) && ek.Keys[:n+1][n] != nil {
			col = ek.Keys[:n+1][n]
			col.IntValues, col.StringValues = col.IntValues[:0], col.StringValues[:0]
		} else {
			col = &kilnv1.KeyColumn{}
		}
		col.Field = field
		ek.Keys = append(ek.Keys, col)
	}
	if (isStr && len(col.IntValues) > 0) || (!isStr && len(col.StringValues) > 0) {
		if r.err == nil {
			r.err = fmt.Errorf("entity %s: key field %s was given both int and string values", ek.Entity, field)
		}
		return nil
	}
	return col
}

func columnLen(c *kilnv1.KeyColumn) int { return len(c.IntValues) + len(c.StringValues) }

// check is what the client can tell about a Request before sending it; the
// server checks the rest (fields and types against the project).
func (r *Request) check(c *Client) error {
	if r.err != nil {
		return r.err
	}
	if r.Prepared != nil {
		if r.Service != "" || len(r.Features) > 0 {
			return fmt.Errorf("request sets both Prepared and Selection (%s): set one", r.Selection)
		}
		if r.Prepared.client != c {
			return fmt.Errorf("request's Prepared comes from another Client: prepared ids are per client and replica")
		}
	} else if err := r.Selection.check(); err != nil {
		return err
	}
	if r.n == 0 {
		return fmt.Errorf("request has no entity keys: Add some")
	}
	for _, ek := range r.ents[:r.n] {
		if len(ek.Keys) == 0 {
			return fmt.Errorf("entity %s: no keys", ek.Entity)
		}
		n := columnLen(ek.Keys[0])
		for _, col := range ek.Keys[1:] {
			if l := columnLen(col); l != n {
				return fmt.Errorf("entity %s: key field %s has %d values but %s has %d: give every key field of every key",
					ek.Entity, col.Field, l, ek.Keys[0].Field, n)
			}
		}
		if n == 0 {
			return fmt.Errorf("entity %s: no keys", ek.Entity)
		}
	}
	return nil
}

// affinityHash hashes the first key of the first entity: entity name and
// every key field, independent of the order the fields were given in.
func (r *Request) affinityHash() uint64 {
	ek := r.ents[0]
	h := xxhash.Sum64String(ek.Entity)
	for _, col := range ek.Keys {
		fh := xxhash.Sum64String(col.Field)
		if len(col.StringValues) > 0 {
			fh ^= xxhash.Sum64String(col.StringValues[0])
		} else if len(col.IntValues) > 0 {
			fh ^= mix64(uint64(col.IntValues[0]))
		}
		h ^= mix64(fh)
	}
	return h
}

// mix64 is SplitMix64's finaliser: a cheap bijection that spreads every
// input bit over the output.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
