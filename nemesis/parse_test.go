package nemesis

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func kinds(faults []Fault) []string {
	var ks []string
	for _, f := range faults {
		ks = append(ks, f.Kind())
	}
	return ks
}

func TestParseValidLists(t *testing.T) {
	cases := []struct {
		list, engine string
		want         []string
	}{
		{"none", EngineMesh, nil},
		{"none", EngineNone, nil},
		{"kill,pause", EngineNone, []string{KindKill, KindPause}},
		{" kill , partition-ring ", EngineMesh, []string{KindKill, KindPartition}},
		{"partition,partition-halves,partition-isolate,partition-ring,partition-bridge,partition-random", EngineMesh,
			slices.Repeat([]string{KindPartition}, 6)},
		{"latency,reset", EngineMesh, []string{KindLatency, KindReset}},
		{"latency,loss", EngineRedis, []string{KindLatency, KindLoss}},
		{"redis-kill,redis-pause,partition", EngineRedis, []string{KindRedisKill, KindRedisPause, KindPartition}},
	}
	for _, c := range cases {
		faults, err := Parse(c.list, c.engine)
		if err != nil {
			t.Errorf("Parse(%q, %q): %v", c.list, c.engine, err)
			continue
		}
		if got := kinds(faults); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q, %q) kinds = %v, want %v", c.list, c.engine, got, c.want)
		}
	}
}

func TestParsePartitionShapes(t *testing.T) {
	faults, err := Parse("partition,partition-bridge", EngineRedis)
	if err != nil {
		t.Fatal(err)
	}
	if p := faults[0].(*partition); p.shape != "" || p.engine != EngineRedis {
		t.Errorf("partition = %+v, want a drawn shape on the redis engine", *p)
	}
	if p := faults[1].(*partition); p.shape != ShapeBridge {
		t.Errorf("partition-bridge shape = %q, want %q", p.shape, ShapeBridge)
	}
}

func TestParseRejectsBadLists(t *testing.T) {
	cases := []struct {
		list, engine string
		// mention are strings the error must contain.
		mention []string
	}{
		{"", EngineMesh, []string{"empty entry", "none, partition"}},
		{"kill,,pause", EngineMesh, []string{`"kill,,pause"`, "empty entry"}},
		{"chaos", EngineMesh, []string{`"chaos"`, "allowed with engine mesh", "partition-ring", "latency"}},
		{"Kill", EngineMesh, []string{`"Kill"`, "kill"}},
		{"none,kill", EngineMesh, []string{"none alone"}},
		{"kill,pause,kill", EngineMesh, []string{"kill twice"}},
		{"redis-kill", EngineMesh, []string{`"redis-kill"`, "--engine redis", "allowed with engine mesh"}},
		{"redis-pause", EngineNone, []string{`"redis-pause"`, "--engine redis"}},
		{"partition", EngineNone, []string{`"partition"`, "engine none", "allowed with engine none: none, kill, pause"}},
		{"partition-halves", EngineNone, []string{`"partition-halves"`}},
		{"latency", EngineNone, []string{`"latency"`}},
		{"loss", EngineNone, []string{`"loss"`}},
		{"reset", EngineNone, []string{`"reset"`}},
		{"partition-triangle", EngineMesh, []string{`"partition-triangle"`, "partition-bridge"}},
		{"kill", "etcd", []string{`"etcd"`, "none, mesh or redis"}},
	}
	for _, c := range cases {
		faults, err := Parse(c.list, c.engine)
		if err == nil {
			t.Errorf("Parse(%q, %q) = %v, want an error", c.list, c.engine, kinds(faults))
			continue
		}
		if !errors.Is(err, ErrInvalidNemesis) {
			t.Errorf("Parse(%q, %q) error %v does not wrap ErrInvalidNemesis", c.list, c.engine, err)
		}
		for _, m := range c.mention {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("Parse(%q, %q) error %q does not mention %q", c.list, c.engine, err, m)
			}
		}
	}
}

func TestNamesForEngines(t *testing.T) {
	if got, want := NamesFor(EngineNone), []string{NameNone, KindKill, KindPause}; !reflect.DeepEqual(got, want) {
		t.Errorf("NamesFor(none) = %v, want %v", got, want)
	}
	mesh := NamesFor(EngineMesh)
	if slices.Contains(mesh, KindRedisKill) || !slices.Contains(mesh, "partition-ring") {
		t.Errorf("NamesFor(mesh) = %v, want partitions and no redis faults", mesh)
	}
	if got := NamesFor(EngineRedis); !reflect.DeepEqual(got, Names()) {
		t.Errorf("NamesFor(redis) = %v, want every name %v", got, Names())
	}
	// Every name Parse accepts on its engine builds a fault of a known kind.
	for _, name := range Names()[1:] {
		faults, err := Parse(name, EngineRedis)
		if err != nil || len(faults) != 1 || resourceOf(faults[0].Kind()) == faults[0].Kind() {
			t.Errorf("Parse(%q, redis) = %v, %v: want one fault of a known kind", name, kinds(faults), err)
		}
	}
}
