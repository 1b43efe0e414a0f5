package client

import (
	"time"

	kilnv1 "github.com/kiln-dev/kiln/proto/kiln/v1"
)

// Type is the type of a feature column or key field.
type Type uint8

// The types of values.
const (
	TypeUnknown Type = iota
	TypeInt64
	TypeFloat64
	TypeString
	TypeBool
)

func (t Type) String() string {
	switch t {
	case TypeInt64:
		return "int64"
	case TypeFloat64:
		return "float64"
	case TypeString:
		return "string"
	case TypeBool:
		return "bool"
	}
	return "unknown"
}

func typeOf(t kilnv1.ValueType) Type {
	switch t {
	case kilnv1.ValueType_VALUE_TYPE_INT64:
		return TypeInt64
	case kilnv1.ValueType_VALUE_TYPE_DOUBLE:
		return TypeFloat64
	case kilnv1.ValueType_VALUE_TYPE_STRING:
		return TypeString
	case kilnv1.ValueType_VALUE_TYPE_BOOL:
		return TypeBool
	}
	return TypeUnknown
}

// Status says whether the store holds anything for a key.
type Status uint8

// The statuses of a key.
const (
	// StatusUnknown: no such key in the answer.
	StatusUnknown Status = iota
	// Present: at least one of the key's rows holds events.
	Present
	// NotFound: no row of the key holds events; every value is null.
	NotFound
)

func (s Status) String() string {
	switch s {
	case Present:
		return "present"
	case NotFound:
		return "not_found"
	}
	return "unknown"
}

// Response is the answer to Get. Its accessors read the protobuf answer in
// place: nothing is copied per value. It is safe for concurrent reads.
type Response struct {
	pb   *kilnv1.GetFeaturesResponse
	addr string
}

// Addr is the address of the replica that answered.
func (r *Response) Addr() string { return r.addr }

// EvaluatedAt is the instant every window was evaluated at (the server's
// clock, millisecond precision).
func (r *Response) EvaluatedAt() time.Time { return time.UnixMilli(r.pb.GetEvaluatedAtMs()) }

// Proto is the protobuf answer itself. Do not modify it.
func (r *Response) Proto() *kilnv1.GetFeaturesResponse { return r.pb }

// NumEntities is the number of entity types in the answer.
func (r *Response) NumEntities() int { return len(r.pb.GetEntities()) }

// EntityAt is the i-th entity type of the answer, in the project file's
// order of entities.
func (r *Response) EntityAt(i int) Entity { return Entity{pb: r.pb.GetEntities()[i]} }

// Entity is the answer for the keys of entity type name, in the order they
// were added to the request. It is empty (Len 0) when the answer has no
// such entity type.
func (r *Response) Entity(name string) Entity {
	for _, e := range r.pb.GetEntities() {
		if e.GetEntity() == name {
			return Entity{pb: e}
		}
	}
	return Entity{}
}

// Entity is the answer for the keys of one entity type: key i is the i-th
// key added for the type. Index out of range panics, as for a slice.
type Entity struct {
	pb *kilnv1.EntityFeatures
}

// Name is the entity type's name.
func (e Entity) Name() string { return e.pb.GetEntity() }

// Len is the number of keys.
func (e Entity) Len() int { return len(e.pb.GetStatuses()) }

// Status says whether key i was found.
func (e Entity) Status(i int) Status {
	switch e.pb.GetStatuses()[i] {
	case kilnv1.Status_STATUS_PRESENT:
		return Present
	case kilnv1.Status_STATUS_NOT_FOUND:
		return NotFound
	}
	return StatusUnknown
}

// Found reports whether key i was found (Status(i) == Present).
func (e Entity) Found(i int) bool { return e.pb.GetStatuses()[i] == kilnv1.Status_STATUS_PRESENT }

// EventTimeMs is the newest event time folded into key i's rows, Unix
// milliseconds; 0 when the key was not found.
func (e Entity) EventTimeMs(i int) int64 { return e.pb.GetEventTimeMs()[i] }

// EventTime is EventTimeMs as a time; the zero time when the key was not
// found.
func (e Entity) EventTime(i int) time.Time {
	ms := e.pb.GetEventTimeMs()[i]
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// NumColumns is the number of feature columns.
func (e Entity) NumColumns() int { return len(e.pb.GetFeatures()) }

// ColumnAt is the k-th feature column: the order of the selection (for a
// service, the project file's; for a Prepared, its Entities' Features).
func (e Entity) ColumnAt(k int) Column { return Column{pb: e.pb.GetFeatures()[k]} }

// Column is the column of the served feature name; an empty Column (Exists
// false, every value null) when the answer has none. It scans the columns:
// look a column up once per response, not once per value.
func (e Entity) Column(name string) Column {
	for _, c := range e.pb.GetFeatures() {
		if c.GetName() == name {
			return Column{pb: c}
		}
	}
	return Column{}
}

// Valid is Column(feature).Valid(i).
func (e Entity) Valid(feature string, i int) bool { return e.Column(feature).Valid(i) }

// Int64 is Column(feature).Int64(i).
func (e Entity) Int64(feature string, i int) int64 { return e.Column(feature).Int64(i) }

// Float64 is Column(feature).Float64(i).
func (e Entity) Float64(feature string, i int) float64 { return e.Column(feature).Float64(i) }

// String is Column(feature).String(i).
func (e Entity) String(feature string, i int) string { return e.Column(feature).String(i) }

// Bool is Column(feature).Bool(i).
func (e Entity) Bool(feature string, i int) bool { return e.Column(feature).Bool(i) }

// Column is one feature's values for every key of an entity type. The
// typed accessors return the zero value where a value is null (Valid is
// false), and for a column of another type (except Float64, which converts
// int64 and bool values, as models take floats).
type Column struct {
	pb *kilnv1.FeatureColumn
}

// Exists reports whether the answer has this column.
func (c Column) Exists() bool { return c.pb != nil }

// Name is the served name of the feature.
func (c Column) Name() string { return c.pb.GetName() }

// Type is the type of the column's values.
func (c Column) Type() Type { return typeOf(c.pb.GetType()) }

// Valid reports whether value i is not null: the key was found and its
// window holds something to aggregate.
func (c Column) Valid(i int) bool {
	if c.pb == nil {
		return false
	}
	return c.pb.Valid[i]
}

// Int64 is value i of an int64 column.
func (c Column) Int64(i int) int64 {
	if c.pb.GetType() != kilnv1.ValueType_VALUE_TYPE_INT64 {
		return 0
	}
	return c.pb.IntValues[i]
}

// Float64 is value i of a float64 column, or of an int64 or bool one
// converted.
func (c Column) Float64(i int) float64 {
	switch c.pb.GetType() {
	case kilnv1.ValueType_VALUE_TYPE_DOUBLE:
		return c.pb.DoubleValues[i]
	case kilnv1.ValueType_VALUE_TYPE_INT64:
		return float64(c.pb.IntValues[i])
	case kilnv1.ValueType_VALUE_TYPE_BOOL:
		if c.pb.BoolValues[i] {
			return 1
		}
	}
	return 0
}

// String is value i of a string column.
func (c Column) String(i int) string {
	if c.pb.GetType() != kilnv1.ValueType_VALUE_TYPE_STRING {
		return ""
	}
	return c.pb.StringValues[i]
}

// Bool is value i of a bool column.
func (c Column) Bool(i int) bool {
	if c.pb.GetType() != kilnv1.ValueType_VALUE_TYPE_BOOL {
		return false
	}
	return c.pb.BoolValues[i]
}

// The slice accessors return the column's values in place, one per key
// (null slots hold the zero value), or nil for a column of another type.
// Do not modify them.

// Int64s are the values of an int64 column.
func (c Column) Int64s() []int64 { return c.pb.GetIntValues() }

// Float64s are the values of a float64 column.
func (c Column) Float64s() []float64 { return c.pb.GetDoubleValues() }

// Strings are the values of a string column.
func (c Column) Strings() []string { return c.pb.GetStringValues() }

// Bools are the values of a bool column.
func (c Column) Bools() []bool { return c.pb.GetBoolValues() }

// ValidFlags are the Valid flags of every key.
func (c Column) ValidFlags() []bool { return c.pb.GetValid() }
