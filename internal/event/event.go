// Package event owns the typed form of one source event: the field types a
// source schema may declare, the Value a field holds, and the Event that the
// ingest path hands to the tile engine.
//
// An Event's Fields are indexed by the position of the field in its source's
// schema (definition.Source.Fields); a field that was absent or null in the
// input has Kind == Null. The event time is in Unix milliseconds.
package event

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Type is the declared type of a source field.
type Type uint8

const (
	// Null is the type of an absent value; never a declared field type.
	Null Type = iota
	Int64
	Float64
	String
	Bool
)

// ParseType returns the Type named in a project file ("int64", "float64",
// "string", "bool").
func ParseType(s string) (Type, bool) {
	switch s {
	case "int64":
		return Int64, true
	case "float64":
		return Float64, true
	case "string":
		return String, true
	case "bool":
		return Bool, true
	}
	return Null, false
}

// TypeNames lists the names ParseType accepts, for error messages.
const TypeNames = "int64, float64, string, bool"

func (t Type) String() string {
	switch t {
	case Null:
		return "null"
	case Int64:
		return "int64"
	case Float64:
		return "float64"
	case String:
		return "string"
	case Bool:
		return "bool"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Numeric reports whether values of t can be summed, averaged and compared.
func (t Type) Numeric() bool { return t == Int64 || t == Float64 }

// Value is one typed field value. Only the member selected by Kind is
// meaningful; the zero Value is Null.
type Value struct {
	Kind  Type
	Int   int64
	Float float64
	Str   string
	Bool  bool
}

// IntValue, FloatValue, StringValue and BoolValue build Values.
func IntValue(v int64) Value     { return Value{Kind: Int64, Int: v} }
func FloatValue(v float64) Value { return Value{Kind: Float64, Float: v} }
func StringValue(v string) Value { return Value{Kind: String, Str: v} }
func BoolValue(v bool) Value     { return Value{Kind: Bool, Bool: v} }

// Num returns the value as a float64; it is 0 for non-numeric values.
func (v Value) Num() float64 {
	switch v.Kind {
	case Int64:
		return float64(v.Int)
	case Float64:
		return v.Float
	}
	return 0
}

// Equal reports whether v and w have the same kind and value.
func (v Value) Equal(w Value) bool {
	if v.Kind != w.Kind {
		return false
	}
	switch v.Kind {
	case Int64:
		return v.Int == w.Int
	case Float64:
		return v.Float == w.Float
	case String:
		return v.Str == w.Str
	case Bool:
		return v.Bool == w.Bool
	}
	return true
}

// Compare orders two values of the same kind: -1, 0 or +1. Values of
// different kinds are ordered by kind. It is the tie-break of "last".
func (v Value) Compare(w Value) int {
	if v.Kind != w.Kind {
		return cmp.Compare(v.Kind, w.Kind)
	}
	switch v.Kind {
	case Int64:
		return cmp.Compare(v.Int, w.Int)
	case Float64:
		return cmp.Compare(v.Float, w.Float) // no event carries NaN (Valid)
	case String:
		return strings.Compare(v.Str, w.Str)
	case Bool:
		if v.Bool == w.Bool {
			return 0
		}
		if w.Bool {
			return -1
		}
		return 1
	}
	return 0
}

func (v Value) String() string {
	switch v.Kind {
	case Int64:
		return strconv.FormatInt(v.Int, 10)
	case Float64:
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	case String:
		return strconv.Quote(v.Str)
	case Bool:
		return strconv.FormatBool(v.Bool)
	}
	return "null"
}

// MaxFloat is the largest magnitude a float64 field of an event may have:
// far beyond any measurement, and small enough that no window's sum of
// such values can overflow to ±Inf (that would take more than 10^18
// events of one key), which would be served as null, like no events.
const MaxFloat = 1e290

// FloatProblem says, for a person, why f cannot be the value of a float64
// field (NaN, ±Inf, or beyond ±MaxFloat); "" when it can.
func FloatProblem(f float64) string {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return strconv.FormatFloat(f, 'g', -1, 64) + " is not a finite float64"
	case math.Abs(f) > MaxFloat:
		return strconv.FormatFloat(f, 'g', -1, 64) + " is beyond ±1e290, the largest magnitude a float64 field takes (so that no sum of them can overflow): scale it down"
	}
	return ""
}

// Valid reports an error for values no event may carry (NaN and ±Inf).
func (v Value) Valid() error {
	if v.Kind == Float64 && (math.IsNaN(v.Float) || math.IsInf(v.Float, 0)) {
		return fmt.Errorf("%v is not a finite number", v.Float)
	}
	return nil
}

// Event is one decoded, validated event of a source.
type Event struct {
	// TS is the event time in Unix milliseconds.
	TS int64
	// Fields holds one value per field of the source schema, in schema order.
	Fields []Value
	// Origin says where a streamed event sits in its source; the zero
	// Origin for pushed events.
	Origin Origin
}

// Origin locates a streamed event: Stream identifies one partition of one
// source (a Kafka topic partition, a JetStream stream), Offset is the event's
// position in it, increasing along the partition. A row records the last
// Offset it applied per Stream, so a replay of the partition is not counted
// twice. Stream 0 means the event has no origin (it was pushed).
type Origin struct {
	Stream, Offset uint64
}

func (e Event) String() string {
	s := "{ts:" + strconv.FormatInt(e.TS, 10)
	for _, v := range e.Fields {
		s += " " + v.String()
	}
	return s + "}"
}

// ParseJSON reads one JSON value (raw) of type t. JSON null is the Null
// Value. A value that does not fit t returns a message for a person saying
// what to write instead.
func ParseJSON(t Type, raw []byte) (Value, string) {
	if string(raw) == "null" {
		return Value{}, ""
	}
	switch t {
	case Int64:
		if len(raw) == 0 || raw[0] == '"' || raw[0] == '{' || raw[0] == '[' || raw[0] == 't' || raw[0] == 'f' {
			return Value{}, fmt.Sprintf("%s is not an int64: write an integer like 42", truncate(raw))
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return Value{}, fmt.Sprintf("%s is out of the int64 range", truncate(raw))
			}
			return Value{}, fmt.Sprintf("%s is not an int64: write an integer like 42", truncate(raw))
		}
		return IntValue(n), ""
	case Float64:
		if len(raw) == 0 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
			return Value{}, fmt.Sprintf("%s is not a float64: write a number like 4.5", truncate(raw))
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return Value{}, fmt.Sprintf("%s is not a finite float64", truncate(raw))
		}
		if math.Abs(f) > MaxFloat {
			return Value{}, FloatProblem(f)
		}
		return FloatValue(f), ""
	case String:
		var s string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return Value{}, fmt.Sprintf("%s is not a string: write it in double quotes", truncate(raw))
		}
		return StringValue(s), ""
	case Bool:
		switch string(raw) {
		case "true":
			return BoolValue(true), ""
		case "false":
			return BoolValue(false), ""
		}
		return Value{}, fmt.Sprintf("%s is not a bool: write true or false", truncate(raw))
	}
	return Value{}, "field of unknown type"
}

func truncate(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}
