package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"
)

// Dead is a message that could not be applied, with the reason.
type Dead struct {
	Source    string
	Partition string
	Offset    uint64
	Reason    string
	// Value is the message as read; a sink may keep only its start
	// (MaxDeadValueBytes).
	Value []byte
	Time  time.Time
}

// MaxDeadValueBytes is how much of a message's value a dead letter keeps:
// enough to see what was wrong, without copying a huge message.
const MaxDeadValueBytes = 64 << 10

// DeadLetters is where dead letters go: a file, a Kafka topic or a NATS
// subject. Send returns once they are stored; a batch's dead letters are
// sent before its position is committed, so a crash may send some twice,
// never lose one.
type DeadLetters interface {
	Send(ctx context.Context, dead []Dead) error
	Close() error
}

// File appends dead letters to a file as JSON lines and syncs it after each
// batch. Each line has the source, partition, offset, reason, the broker
// time and the value: as a JSON string when it is valid UTF-8, else base64
// in value_base64; cut at MaxDeadValueBytes (then truncated is true).
type File struct {
	mu  sync.Mutex
	f   *os.File
	buf []byte
}

// OpenFile opens (creating it and its directory if needed) the dead-letter
// file at path for appending.
func OpenFile(path string) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return &File{f: f}, nil
}

// deadLine is the JSON shape of one line of a dead-letter file.
type deadLine struct {
	Source      string    `json:"source"`
	Partition   string    `json:"partition"`
	Offset      uint64    `json:"offset"`
	Reason      string    `json:"reason"`
	Time        time.Time `json:"time,omitzero"`
	Size        int       `json:"size"`
	Value       *string   `json:"value,omitempty"`
	ValueBase64 []byte    `json:"value_base64,omitempty"`
	Truncated   bool      `json:"truncated,omitempty"`
}

// Line returns the JSON line a dead letter is written as (without the
// newline). The NATS sink sends it as the message; the Kafka sink sends the
// original value with the rest in headers, as Kafka tools expect.
func Line(d Dead) []byte {
	l := deadLine{Source: d.Source, Partition: d.Partition, Offset: d.Offset, Reason: d.Reason, Time: d.Time, Size: len(d.Value)}
	v := d.Value
	if len(v) > MaxDeadValueBytes {
		v, l.Truncated = v[:MaxDeadValueBytes], true
	}
	if utf8.Valid(v) {
		s := string(v)
		l.Value = &s
	} else {
		l.ValueBase64 = v
	}
	b, _ := json.Marshal(l) // only strings, numbers and a time: cannot fail
	return b
}

// Send appends the dead letters and syncs the file.
func (f *File) Send(_ context.Context, dead []Dead) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return fmt.Errorf("dead letters: file closed")
	}
	f.buf = f.buf[:0]
	for _, d := range dead {
		f.buf = append(f.buf, Line(d)...)
		f.buf = append(f.buf, '\n')
	}
	if _, err := f.f.Write(f.buf); err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	if err := f.f.Sync(); err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	return nil
}

// Close closes the file.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	return err
}
