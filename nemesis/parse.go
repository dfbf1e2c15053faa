package nemesis

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/wscluster/wscluster/history"
)

// Fault kinds, as in history.Fault.Kind.
const (
	KindPartition  = history.FaultPartition
	KindLatency    = history.FaultLatency
	KindReset      = history.FaultReset
	KindLoss       = history.FaultLoss
	KindKill       = history.FaultKill
	KindPause      = history.FaultPause
	KindRedisKill  = history.FaultRedisKill
	KindRedisPause = history.FaultRedisPause
)

// Engines, as in topology.Config.Engine.
const (
	EngineNone  = "none"
	EngineMesh  = "mesh"
	EngineRedis = "redis"
)

// NameNone is the --nemesis value for a run without faults.
const NameNone = "none"

// ErrInvalidNemesis is returned, wrapped, by Parse for a --nemesis value it
// rejects. The message names the value and the values allowed.
var ErrInvalidNemesis = errors.New("nemesis: invalid --nemesis value")

// Names returns every --nemesis value.
func Names() []string {
	names := []string{NameNone, KindPartition}
	for _, s := range ShapeNames() {
		names = append(names, KindPartition+"-"+s)
	}
	return append(names, KindLatency, KindLoss, KindReset, KindKill, KindPause, KindRedisKill, KindRedisPause)
}

// NamesFor returns the --nemesis values that make sense with engine: the
// network faults need links between nodes, which engine none lacks, and the
// redis-* faults need the Redis engine.
func NamesFor(engine string) []string {
	var names []string
	for _, name := range Names() {
		if allowed(name, engine) {
			names = append(names, name)
		}
	}
	return names
}

func allowed(name, engine string) bool {
	switch {
	case name == KindRedisKill || name == KindRedisPause:
		return engine == EngineRedis
	case name == KindLatency || name == KindLoss || name == KindReset || strings.HasPrefix(name, KindPartition):
		return engine != EngineNone
	default:
		return true
	}
}

// Parse turns a comma-separated --nemesis list into faults for engine
// ("none", "mesh" or "redis"). "none" alone gives no faults. "partition"
// draws a shape per injection; "partition-<shape>" always cuts that shape.
// Parse rejects an empty list, an unknown name, a name listed twice, "none"
// with other names, and a name that does not fit the engine.
func Parse(list, engine string) ([]Fault, error) {
	if !slices.Contains([]string{EngineNone, EngineMesh, EngineRedis}, engine) {
		return nil, fmt.Errorf("%w: unknown engine %q: use none, mesh or redis", ErrInvalidNemesis, engine)
	}
	names := strings.Split(list, ",")
	for i := range names {
		names[i] = strings.TrimSpace(names[i])
	}
	if err := checkNames(list, names, engine); err != nil {
		return nil, err
	}
	if len(names) == 1 && names[0] == NameNone {
		return nil, nil
	}
	faults := make([]Fault, len(names))
	for i, name := range names {
		faults[i] = newFault(name, engine)
	}
	return faults, nil
}

// checkNames returns an error naming the first name of the list that Parse
// rejects, and the names allowed with engine.
func checkNames(list string, names []string, engine string) error {
	allowedNames := "allowed with engine " + engine + ": " + strings.Join(NamesFor(engine), ", ")
	for i, name := range names {
		switch {
		case name == "":
			return fmt.Errorf("%w: %q has an empty entry. Give a comma-separated list, %s", ErrInvalidNemesis, list, allowedNames)
		case !slices.Contains(Names(), name):
			return fmt.Errorf("%w: unknown fault %q in %q. Use a comma-separated list, %s", ErrInvalidNemesis, name, list, allowedNames)
		case name == NameNone && len(names) > 1:
			return fmt.Errorf("%w: %q combines none with faults. Give none alone, or faults only", ErrInvalidNemesis, list)
		case slices.Contains(names[:i], name):
			return fmt.Errorf("%w: %q lists %s twice. Give each fault once", ErrInvalidNemesis, list, name)
		case !allowed(name, engine):
			return fmt.Errorf("%w: fault %q does not apply to engine %s (%s). Values %s",
				ErrInvalidNemesis, name, engine, whyNotAllowed(name), allowedNames)
		}
	}
	return nil
}

func whyNotAllowed(name string) string {
	if strings.HasPrefix(name, "redis-") {
		return "it needs --engine redis"
	}
	return "engine none has no links between nodes"
}

// newFault returns the fault for a name that checkNames accepted.
func newFault(name, engine string) Fault {
	switch name {
	case KindLatency:
		return latency{}
	case KindLoss:
		return loss{}
	case KindReset:
		return reset{}
	case KindKill:
		return &kill{}
	case KindPause:
		return &pause{}
	case KindRedisKill:
		return redisKill{}
	case KindRedisPause:
		return redisPause{}
	default:
		shape := strings.TrimPrefix(strings.TrimPrefix(name, KindPartition), "-")
		return &partition{shape: shape, engine: engine}
	}
}
