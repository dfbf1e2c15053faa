package checker

import (
	"encoding/json"
	"testing"

	"github.com/wscluster/wscluster/history"
)

type fixedChecker struct {
	name    string
	verdict Verdict
	panics  bool
}

func (c fixedChecker) Name() string { return c.name }

func (c fixedChecker) Check(Input) Result {
	if c.panics {
		panic("boom")
	}
	return Result{Valid: c.verdict}
}

func TestCheckAllCombinesVerdicts(t *testing.T) {
	cases := []struct {
		name     string
		checkers []Checker
		want     Verdict
	}{
		{"all valid", []Checker{fixedChecker{"a", Valid, false}, fixedChecker{"b", Valid, false}}, Valid},
		{"one unknown", []Checker{fixedChecker{"a", Valid, false}, fixedChecker{"b", Unknown, false}}, Unknown},
		{"invalid wins", []Checker{fixedChecker{"a", Unknown, false}, fixedChecker{"b", Invalid, false}}, Invalid},
		{"panic is unknown", []Checker{fixedChecker{"a", Valid, false}, fixedChecker{"b", Valid, true}}, Unknown},
		{"no checkers", nil, Unknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := CheckAll(Input{}, tc.checkers)
			if res.Valid != tc.want {
				t.Errorf("verdict = %v, want %v", res.Valid, tc.want)
			}
			if len(res.Checkers) != len(tc.checkers) {
				t.Errorf("%d results for %d checkers", len(res.Checkers), len(tc.checkers))
			}
		})
	}
}

func TestCheckAllListsFaultMechanisms(t *testing.T) {
	fault := &history.Fault{ID: "f1", Kind: "partition", Detail: "isolate [n1]", Nodes: []string{"n1"}, Mechanism: "nftables"}
	ops := []history.Op{
		{Type: history.Nemesis, F: history.FFaultStart, Time: 2e9, Fault: fault},
		{Type: history.Nemesis, F: history.FFaultStop, Time: 5e9, Fault: fault},
	}
	res := CheckAll(Input{History: ops}, []Checker{fixedChecker{"a", Valid, false}})
	if len(res.Faults) != 1 {
		t.Fatalf("faults = %+v, want one", res.Faults)
	}
	got := res.Faults[0]
	if got.Mechanism != "nftables" || got.Start != 2 || got.Stop != 5 {
		t.Errorf("fault = %+v, want nftables from 2 s to 5 s", got)
	}
	b, err := res.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var decoded map[string]any
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatal(err)
	}
	faults, _ := decoded["faults"].([]any)
	if len(faults) != 1 || faults[0].(map[string]any)["mechanism"] != "nftables" {
		t.Errorf("results.json faults = %v, want the mechanism", decoded["faults"])
	}
}

func TestVerdictJSON(t *testing.T) {
	for v, text := range map[Verdict]string{Valid: "true", Invalid: "false", Unknown: `"unknown"`} {
		b, err := json.Marshal(v)
		if err != nil || string(b) != text {
			t.Errorf("marshal %v = %s, %v; want %s", v, b, err, text)
		}
		var back Verdict
		if err := json.Unmarshal(b, &back); err != nil || back != v {
			t.Errorf("unmarshal %s = %v, %v", b, back, err)
		}
	}
	var v Verdict
	if err := json.Unmarshal([]byte(`"maybe"`), &v); err == nil {
		t.Error("unmarshal of \"maybe\" succeeded, want an error")
	}
}
