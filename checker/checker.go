// Package checker decides whether a suite run kept the guarantees of the
// wscluster contract. Each Checker reads the whole history after the run and
// returns a Result with a verdict, counts and the first examples of every
// anomaly it found. A checker that cannot decide returns Unknown, which fails a
// run just as Invalid does: an undecided check is not a pass.
package checker

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/wscluster/wscluster/history"
)

// Verdict is a checker's decision.
type Verdict int

// Verdicts, from best to worst when combined.
const (
	Valid Verdict = iota
	Unknown
	Invalid
)

// String returns "valid", "unknown" or "invalid".
func (v Verdict) String() string {
	switch v {
	case Valid:
		return "valid"
	case Unknown:
		return "unknown"
	default:
		return "invalid"
	}
}

// MarshalJSON writes true, false or "unknown", the form Jepsen uses for
// its :valid? key.
func (v Verdict) MarshalJSON() ([]byte, error) {
	switch v {
	case Valid:
		return []byte("true"), nil
	case Invalid:
		return []byte("false"), nil
	default:
		return []byte(`"unknown"`), nil
	}
}

// UnmarshalJSON reads what MarshalJSON writes.
func (v *Verdict) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true":
		*v = Valid
	case "false":
		*v = Invalid
	case `"unknown"`:
		*v = Unknown
	default:
		return fmt.Errorf("checker: verdict %s: want true, false or \"unknown\"", b)
	}
	return nil
}

// Combine returns the worst of the verdicts: Invalid over Unknown over
// Valid. No verdicts at all is Unknown.
func Combine(vs ...Verdict) Verdict {
	if len(vs) == 0 {
		return Unknown
	}
	worst := Valid
	for _, v := range vs {
		if v > worst {
			worst = v
		}
	}
	return worst
}

// MaxExamples is how many examples a Result keeps per anomaly kind.
const MaxExamples = 10

// Result is one checker's verdict with the evidence behind it.
type Result struct {
	// Name is the checker's name, e.g. "delivery".
	Name string `json:"name"`
	// Valid is the verdict.
	Valid Verdict `json:"valid"`
	// Summary is one sentence for the report, e.g. "2 of 5012 expected
	// deliveries lost outside fault windows".
	Summary string `json:"summary"`
	// Counts are the checker's tallies by name, anomalies and totals
	// alike, e.g. "expected", "lost-outside", "duplicated".
	Counts map[string]int `json:"counts,omitempty"`
	// Stats are measured values by name, e.g. "latency-p99-ms".
	Stats map[string]float64 `json:"stats,omitempty"`
	// Anomalies holds up to MaxExamples examples per anomaly kind.
	Anomalies map[string][]Anomaly `json:"anomalies,omitempty"`
	// Artifacts are files the checker wrote into Input.Dir, relative to it,
	// e.g. a porcupine visualization.
	Artifacts []string `json:"artifacts,omitempty"`
}

// Anomaly is one concrete example of a violation.
type Anomaly struct {
	// Description states the violation in one sentence.
	Description string `json:"description"`
	// Time is the history time the anomaly is about, in nanoseconds.
	Time int64 `json:"time,omitempty"`
	// Ops are the indexes of the history entries that show it.
	Ops []int `json:"ops,omitempty"`
	// Node, Channel and MsgID locate it, when they apply.
	Node    string `json:"node,omitempty"`
	Channel string `json:"channel,omitempty"`
	MsgID   string `json:"msg_id,omitempty"`
}

// AddAnomaly counts one anomaly of kind and keeps it as an example while
// fewer than MaxExamples are kept.
func (r *Result) AddAnomaly(kind string, a Anomaly) {
	if r.Counts == nil {
		r.Counts = map[string]int{}
	}
	r.Counts[kind]++
	if r.Anomalies == nil {
		r.Anomalies = map[string][]Anomaly{}
	}
	if len(r.Anomalies[kind]) < MaxExamples {
		r.Anomalies[kind] = append(r.Anomalies[kind], a)
	}
}

// Run describes the run a history came from.
type Run struct {
	Engine string   `json:"engine"`
	Nodes  []string `json:"nodes"`
	// Ordering is the nodes' --ordering, "" or "total".
	Ordering          string        `json:"ordering,omitempty"`
	HeartbeatInterval time.Duration `json:"heartbeat_interval"`
	PeerTimeout       time.Duration `json:"peer_timeout"`
	PingInterval      time.Duration `json:"ping_interval"`
	// ReplayMaxAge is the mesh replay buffer's age limit (60s).
	ReplayMaxAge time.Duration `json:"replay_max_age"`
}

// Input is the run description and history that every checker reads.
type Input struct {
	Run     Run
	History []history.Op
	// Dir is the run folder, where a checker may write artifacts.
	Dir string
}

// Checker checks one group of guarantees.
type Checker interface {
	Name() string
	Check(in Input) Result
}

// Results is the content of results.json.
type Results struct {
	Valid    Verdict  `json:"valid"`
	Checkers []Result `json:"checkers"`
	// Faults lists every fault the nemesis injected, with the mechanism
	// that injected it, so a reader sees how each fault was made without
	// opening the history.
	Faults []FaultRecord `json:"faults"`
}

// FaultRecord is one injected fault and its window, in seconds since the
// run started.
type FaultRecord struct {
	history.Fault
	Start float64 `json:"start_s"`
	Stop  float64 `json:"stop_s"`
}

// CheckAll runs every checker and combines their verdicts. A checker that
// panics gets an Unknown result naming the panic, so one broken checker
// cannot hide the others' findings.
func CheckAll(in Input, checkers []Checker) Results {
	var res Results
	verdicts := make([]Verdict, 0, len(checkers))
	for _, c := range checkers {
		r := checkOne(in, c)
		res.Checkers = append(res.Checkers, r)
		verdicts = append(verdicts, r.Valid)
	}
	res.Valid = Combine(verdicts...)
	res.Faults = []FaultRecord{}
	for _, w := range Windows(in.History) {
		res.Faults = append(res.Faults, FaultRecord{Fault: w.Fault, Start: seconds(w.Start), Stop: seconds(w.Stop)})
	}
	return res
}

func seconds(ns int64) float64 {
	return time.Duration(ns).Seconds()
}

func checkOne(in Input, c Checker) (r Result) {
	defer func() {
		if p := recover(); p != nil {
			r = Result{Name: c.Name(), Valid: Unknown, Summary: fmt.Sprintf("checker panicked: %v", p)}
		}
	}()
	r = c.Check(in)
	r.Name = c.Name()
	return r
}

// Marshal encodes results as indented JSON.
func (r Results) Marshal() ([]byte, error) {
	return json.MarshalIndent(r, "", "  ")
}
