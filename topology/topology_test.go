package topology

import (
	"slices"
	"testing"
)

func TestEngineLinksPerEngine(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	mesh := EngineLinks("mesh", ids)
	if want := []Link{{"n1", "n2"}, {"n1", "n3"}, {"n2", "n3"}}; !slices.Equal(mesh, want) {
		t.Errorf("mesh links = %v, want %v", mesh, want)
	}
	redis := EngineLinks("redis", ids)
	if want := []Link{{"n1", Redis}, {"n2", Redis}, {"n3", Redis}}; !slices.Equal(redis, want) {
		t.Errorf("redis links = %v, want %v", redis, want)
	}
	if none := EngineLinks("none", ids); none == nil || len(none) != 0 {
		t.Errorf("none links = %#v, want an empty list", none)
	}
}

func TestNodeFlagsOrdering(t *testing.T) {
	c := Config{Engine: "redis"}.WithDefaults()
	flags := c.NodeFlags("n2")
	if !slices.Contains(flags, "n2") || !slices.Contains(flags, "3s") {
		t.Errorf("flags %v lack the node id or the peer timeout", flags)
	}
	if slices.Contains(flags, "--ordering") {
		t.Errorf("flags %v set --ordering without one configured", flags)
	}
	c.Ordering = "total"
	if flags := c.NodeFlags("n2"); !slices.Contains(flags, "total") {
		t.Errorf("flags %v lack --ordering total", flags)
	}
}
