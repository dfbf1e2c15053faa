package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Recorder appends entries to a history. It assigns Index and Time, keeps
// every entry in memory for the checkers and, when created with a writer,
// also streams each entry as one JSON line, so a crashed run still leaves a
// history behind. It is safe for concurrent use.
type Recorder struct {
	start time.Time

	mu  sync.Mutex
	ops []Op
	w   *bufio.Writer
	err error
}

// NewRecorder starts a history whose time zero is now. w may be nil.
func NewRecorder(w io.Writer) *Recorder {
	r := &Recorder{start: time.Now()}
	if w != nil {
		r.w = bufio.NewWriterSize(w, 64<<10)
	}
	return r
}

// Now is the current time in the history's clock: nanoseconds since the
// recorder started, from the monotonic clock.
func (r *Recorder) Now() int64 {
	return int64(time.Since(r.start))
}

// Start is the wall-clock time of time zero.
func (r *Recorder) Start() time.Time {
	return r.start
}

// Record stamps op with the next index and the current time, unless op.Time
// is already set, and appends it. It returns the stored entry.
func (r *Recorder) Record(op Op) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	if op.Time == 0 {
		op.Time = r.Now()
	}
	op.Index = len(r.ops)
	r.ops = append(r.ops, op)
	if r.w != nil && r.err == nil {
		r.err = writeLine(r.w, op)
	}
	return op
}

// Ops returns a copy of the entries recorded so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// Flush writes buffered lines and returns the first write error, if any.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil {
		return r.err
	}
	if err := r.w.Flush(); err != nil && r.err == nil {
		r.err = err
	}
	return r.err
}

func writeLine(w *bufio.Writer, op Op) error {
	b, err := json.Marshal(op)
	if err != nil {
		return fmt.Errorf("history: encode entry %d: %w", op.Index, err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("history: write entry %d: %w", op.Index, err)
	}
	return nil
}

// ReadFile loads a history written by a Recorder, one JSON entry per line.
func ReadFile(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	return Read(f)
}

// Read decodes a history of one JSON entry per line.
func Read(rd io.Reader) ([]Op, error) {
	var ops []Op
	dec := json.NewDecoder(rd)
	for {
		var op Op
		err := dec.Decode(&op)
		if err == io.EOF {
			return ops, nil
		}
		if err != nil {
			return ops, fmt.Errorf("history: entry %d: %w", len(ops), err)
		}
		ops = append(ops, op)
	}
}
