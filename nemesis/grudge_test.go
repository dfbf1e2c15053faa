package nemesis

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/wscluster/wscluster/topology"
)

const seeds = 60

func nodeIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%d", i+1)
	}
	return ids
}

// meshLinks returns every pair of nodes, as a mesh topology lists them.
func meshLinks(nodes []string) []topology.Link {
	var links []topology.Link
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			links = append(links, topology.Link{a, b})
		}
	}
	return links
}

// starLinks returns every node with Redis, as a Redis topology lists them.
func starLinks(nodes []string) []topology.Link {
	links := make([]topology.Link, len(nodes))
	for i, n := range nodes {
		links[i] = topology.Link{n, topology.Redis}
	}
	return links
}

// graph is the adjacency of the links left after a cut.
type graph map[string]map[string]bool

func uncut(vertices []string, links, cut []topology.Link) graph {
	g := graph{}
	for _, v := range vertices {
		g[v] = map[string]bool{}
	}
	for _, l := range links {
		if !slices.Contains(cut, l) {
			g[l[0]][l[1]] = true
			g[l[1]][l[0]] = true
		}
	}
	return g
}

// view returns v and the vertices it has a link to, sorted.
func (g graph) view(v string) []string {
	seen := []string{v}
	for w := range g[v] {
		seen = append(seen, w)
	}
	slices.Sort(seen)
	return seen
}

// components returns the connected components, each sorted, sorted by
// their first vertex.
func (g graph) components(vertices []string) [][]string {
	done := map[string]bool{}
	var comps [][]string
	for _, v := range vertices {
		if done[v] {
			continue
		}
		var comp []string
		stack := []string{v}
		done[v] = true
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			comp = append(comp, x)
			for y := range g[x] {
				if !done[y] {
					done[y] = true
					stack = append(stack, y)
				}
			}
		}
		slices.Sort(comp)
		comps = append(comps, comp)
	}
	slices.SortFunc(comps, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	return comps
}

func sortedGroups(groups ...[]string) [][]string {
	var out [][]string
	for _, g := range groups {
		c := slices.Clone(g)
		slices.Sort(c)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	return out
}

func singletons(vs []string) [][]string {
	var out [][]string
	for _, v := range vs {
		out = append(out, []string{v})
	}
	return out
}

func draw(t *testing.T, shape string, vertices []string, links []topology.Link, seed uint64) Cut {
	t.Helper()
	cut, err := DrawShape(shape, vertices, links, rand.New(rand.NewPCG(seed, 0)))
	if err != nil {
		t.Fatalf("%s on %v, seed %d: %v", shape, vertices, seed, err)
	}
	return cut
}

// checkNodes checks that Cut.Nodes is every vertex that lost a link.
func checkNodes(t *testing.T, cut Cut, vertices []string) {
	t.Helper()
	want := endpointsInOrder(vertices, cut.Links)
	if !reflect.DeepEqual(cut.Nodes, want) {
		t.Errorf("%s: Nodes = %v, want the endpoints of the cut links %v", cut.Detail, cut.Nodes, want)
	}
	if len(cut.Links) == 0 {
		t.Errorf("%s: cuts no link", cut.Detail)
	}
}

func TestHalvesMeshTwoCliques(t *testing.T) {
	for _, n := range []int{3, 5} {
		nodes := nodeIDs(n)
		links := meshLinks(nodes)
		for seed := range uint64(seeds) {
			cut := draw(t, ShapeHalves, nodes, links, seed)
			checkNodes(t, cut, nodes)
			left, right := cut.Groups[0], cut.Groups[1]
			if len(left) != n/2 || len(right) != n-n/2 {
				t.Fatalf("%s: sides of %d and %d nodes, want %d and %d", cut.Detail, len(left), len(right), n/2, n-n/2)
			}
			g := uncut(nodes, links, cut.Links)
			if got, want := g.components(nodes), sortedGroups(left, right); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: components %v, want %v", cut.Detail, got, want)
			}
			if len(cut.Links) != len(left)*len(right) {
				t.Fatalf("%s: cut %d links, want only the %d between the sides", cut.Detail, len(cut.Links), len(left)*len(right))
			}
			wantDetail := fmt.Sprintf("halves %s | %s", bracket(left), bracket(right))
			if cut.Detail != wantDetail {
				t.Fatalf("Detail = %q, want %q", cut.Detail, wantDetail)
			}
		}
	}
}

func TestHalvesRedisCutsOneSide(t *testing.T) {
	for _, n := range []int{3, 5} {
		nodes := nodeIDs(n)
		vertices := append(slices.Clone(nodes), topology.Redis)
		links := starLinks(nodes)
		cutSizes := map[int]bool{}
		for seed := range uint64(seeds) {
			cut := draw(t, ShapeHalves, vertices, links, seed)
			checkNodes(t, cut, vertices)
			keep, lost := redisSides(t, cut)
			cutSizes[len(lost)] = true
			checkStarCut(t, cut, vertices, links, keep, lost)
		}
		// Redis joins a random side, so both sizes of the cut side occur.
		if !cutSizes[n/2] || !cutSizes[n-n/2] {
			t.Errorf("%d nodes: cut sides of sizes %v, want both %d and %d", n, cutSizes, n/2, n-n/2)
		}
	}
}

// redisSides returns the group with Redis and the group without it.
func redisSides(t *testing.T, cut Cut) (keep, lost []string) {
	t.Helper()
	if len(cut.Groups) != 2 {
		t.Fatalf("%s: %d groups, want 2", cut.Detail, len(cut.Groups))
	}
	if slices.Contains(cut.Groups[0], topology.Redis) {
		return cut.Groups[0], cut.Groups[1]
	}
	return cut.Groups[1], cut.Groups[0]
}

// checkStarCut checks that exactly the nodes of lost lose their Redis link,
// which leaves the Redis side connected and each lost node alone.
func checkStarCut(t *testing.T, cut Cut, vertices []string, links []topology.Link, keep, lost []string) {
	t.Helper()
	if !slices.Contains(keep, topology.Redis) || slices.Contains(lost, topology.Redis) {
		t.Fatalf("%s: Redis side %v, cut side %v", cut.Detail, keep, lost)
	}
	if !reflect.DeepEqual(cut.Links, starLinks(lost)) {
		t.Fatalf("%s: cut %v, want %v", cut.Detail, cut.Links, starLinks(lost))
	}
	want := append(sortedGroups(keep), singletons(lost)...)
	want = sortedGroups(want...)
	if got := uncut(vertices, links, cut.Links).components(vertices); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: components %v, want %v", cut.Detail, got, want)
	}
	if !slices.Contains(cut.Nodes, topology.Redis) {
		t.Fatalf("%s: Nodes %v lack %q although its links were cut", cut.Detail, cut.Nodes, topology.Redis)
	}
}

func TestIsolateMeshOneNodeAlone(t *testing.T) {
	for _, n := range []int{3, 5} {
		nodes := nodeIDs(n)
		links := meshLinks(nodes)
		picked := map[string]bool{}
		for seed := range uint64(seeds) {
			cut := draw(t, ShapeIsolate, nodes, links, seed)
			checkNodes(t, cut, nodes)
			alone, rest := cut.Groups[0], cut.Groups[1]
			if len(alone) != 1 {
				t.Fatalf("%s: isolated %v, want one node", cut.Detail, alone)
			}
			picked[alone[0]] = true
			g := uncut(nodes, links, cut.Links)
			if got, want := g.components(nodes), sortedGroups(alone, rest); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: components %v, want %v", cut.Detail, got, want)
			}
			if len(cut.Links) != n-1 {
				t.Fatalf("%s: cut %d links, want %d", cut.Detail, len(cut.Links), n-1)
			}
		}
		if len(picked) != n {
			t.Errorf("%d nodes: isolated only %v over %d seeds", n, picked, seeds)
		}
	}
}

func TestIsolateRedisOneNodeCut(t *testing.T) {
	for _, n := range []int{3, 5} {
		nodes := nodeIDs(n)
		vertices := append(slices.Clone(nodes), topology.Redis)
		links := starLinks(nodes)
		for seed := range uint64(seeds) {
			cut := draw(t, ShapeIsolate, vertices, links, seed)
			checkNodes(t, cut, vertices)
			keep, lost := redisSides(t, cut)
			if len(lost) != 1 {
				t.Fatalf("%s: cut %v from Redis, want one node", cut.Detail, lost)
			}
			checkStarCut(t, cut, vertices, links, keep, lost)
		}
	}
}

func TestRingMeshMajorities(t *testing.T) {
	for _, n := range []int{3, 4, 5, 6, 7} {
		nodes := nodeIDs(n)
		links := meshLinks(nodes)
		for seed := range uint64(seeds) {
			cut := draw(t, ShapeRing, nodes, links, seed)
			checkNodes(t, cut, nodes)
			g := uncut(nodes, links, cut.Links)
			views := map[string]string{}
			for _, v := range nodes {
				view := g.view(v)
				if len(view) < n/2+1 {
					t.Fatalf("%s: %s sees %v, less than a majority of %d", cut.Detail, v, view, n)
				}
				key := strings.Join(view, " ")
				if other, dup := views[key]; dup {
					t.Fatalf("%s: %s and %s see the same majority %v", cut.Detail, v, other, view)
				}
				views[key] = v
			}
		}
	}
}

func TestRingMeshThreeAndFiveNodes(t *testing.T) {
	three := nodeIDs(3)
	for seed := range uint64(seeds) {
		cut := draw(t, ShapeRing, three, meshLinks(three), seed)
		if len(cut.Links) != 1 {
			t.Fatalf("3 nodes: %s cut %v, want one link", cut.Detail, cut.Links)
		}
	}
	five := nodeIDs(5)
	for seed := range uint64(seeds) {
		cut := draw(t, ShapeRing, five, meshLinks(five), seed)
		if len(cut.Links) != 5 {
			t.Fatalf("5 nodes: %s cut %d links, want 5", cut.Detail, len(cut.Links))
		}
		g := uncut(five, meshLinks(five), cut.Links)
		for _, v := range five {
			if len(g.view(v)) != 3 {
				t.Fatalf("5 nodes: %s: %s sees %v, want 3 nodes", cut.Detail, v, g.view(v))
			}
		}
	}
}

func TestBridgeMeshReachesBothHalves(t *testing.T) {
	for _, n := range []int{3, 5} {
		nodes := nodeIDs(n)
		links := meshLinks(nodes)
		for seed := range uint64(seeds) {
			cut := draw(t, ShapeBridge, nodes, links, seed)
			checkNodes(t, cut, nodes)
			left, right, bridge := cut.Groups[0], cut.Groups[1], cut.Groups[2][0]
			if len(left) != (n-1)/2 || len(right) != n-1-(n-1)/2 {
				t.Fatalf("%s: halves of %d and %d nodes", cut.Detail, len(left), len(right))
			}
			g := uncut(nodes, links, cut.Links)
			for _, v := range slices.Concat(left, right) {
				if !g[bridge][v] {
					t.Fatalf("%s: bridge %s does not reach %s", cut.Detail, bridge, v)
				}
			}
			for _, a := range left {
				for _, b := range right {
					if g[a][b] {
						t.Fatalf("%s: %s in one half still sees %s in the other", cut.Detail, a, b)
					}
				}
			}
			for _, side := range [][]string{left, right} {
				for _, a := range side {
					for _, b := range side {
						if a != b && !g[a][b] {
							t.Fatalf("%s: %s and %s of the same half lost their link", cut.Detail, a, b)
						}
					}
				}
			}
		}
	}
}

func TestRingAndBridgeRedisAsHalves(t *testing.T) {
	for _, n := range []int{3, 5} {
		nodes := nodeIDs(n)
		vertices := append(slices.Clone(nodes), topology.Redis)
		links := starLinks(nodes)
		for seed := range uint64(seeds) {
			ring := draw(t, ShapeRing, vertices, links, seed)
			keep, lost := redisSides(t, ring)
			checkStarCut(t, ring, vertices, links, keep, lost)
			if len(lost) != n/2 || !strings.HasSuffix(ring.Detail, "(ring on the redis engine)") {
				t.Fatalf("ring on redis: %s cut %v, want the smaller side of %d nodes", ring.Detail, lost, n/2)
			}

			bridge := draw(t, ShapeBridge, vertices, links, seed)
			keep, lost = redisSides(t, bridge)
			checkStarCut(t, bridge, vertices, links, keep, lost)
			if len(lost) != n-n/2 || !strings.HasSuffix(bridge.Detail, "(bridge on the redis engine)") {
				t.Fatalf("bridge on redis: %s cut %v, want the larger side of %d nodes", bridge.Detail, lost, n-n/2)
			}
		}
	}
}

func TestRandomCutsSubsetOfLinks(t *testing.T) {
	nodes := nodeIDs(5)
	cases := map[string]struct {
		vertices []string
		links    []topology.Link
	}{
		"mesh":  {nodes, meshLinks(nodes)},
		"redis": {append(slices.Clone(nodes), topology.Redis), starLinks(nodes)},
	}
	for name, c := range cases {
		distinct := map[string]bool{}
		for seed := range uint64(seeds) {
			cut := draw(t, ShapeRandom, c.vertices, c.links, seed)
			checkNodes(t, cut, c.vertices)
			for _, l := range cut.Links {
				if !slices.Contains(c.links, l) {
					t.Fatalf("%s: %s cut %v, which is not a topology link", name, cut.Detail, l)
				}
			}
			if cut.Detail != "random cut "+formatLinks(cut.Links) {
				t.Fatalf("%s: Detail %q does not list the cut links", name, cut.Detail)
			}
			distinct[cut.Detail] = true
		}
		// 5 Redis links allow 31 cuts, so 60 seeds give about 28 distinct
		// ones. Ten is far below that and far above a stuck rng.
		if len(distinct) < 10 {
			t.Errorf("%s: only %d distinct cuts over %d seeds", name, len(distinct), seeds)
		}
	}
}

func TestRandomOneLinkAlwaysCut(t *testing.T) {
	nodes := nodeIDs(2)
	for seed := range uint64(seeds) {
		cut := draw(t, ShapeRandom, nodes, meshLinks(nodes), seed)
		if len(cut.Links) != 1 {
			t.Fatalf("2 nodes: %s cut %v, want the only link", cut.Detail, cut.Links)
		}
	}
}

func TestShapeSameSeedSameCut(t *testing.T) {
	nodes := nodeIDs(5)
	star := append(slices.Clone(nodes), topology.Redis)
	for _, shape := range ShapeNames() {
		for _, vs := range [][]string{nodes, star} {
			links := meshLinks(nodes)
			if isStar(vs) {
				links = starLinks(nodes)
			}
			a := draw(t, shape, vs, links, 42)
			b := draw(t, shape, vs, links, 42)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s: seed 42 gave %q and then %q", shape, a.Detail, b.Detail)
			}
		}
	}
}

func TestShapeTooFewNodes(t *testing.T) {
	cases := []struct {
		shape    string
		vertices []string
	}{
		{ShapeHalves, nodeIDs(1)},
		{ShapeIsolate, nodeIDs(1)},
		{ShapeRing, nodeIDs(2)},
		{ShapeBridge, nodeIDs(2)},
		{ShapeRandom, nodeIDs(1)},
		{ShapeHalves, []string{"n1", topology.Redis}},
		{ShapeRing, []string{"n1", topology.Redis}},
		{ShapeIsolate, []string{topology.Redis}},
	}
	for _, c := range cases {
		nodes := without(c.vertices, []string{topology.Redis})
		links := meshLinks(nodes)
		if isStar(c.vertices) {
			links = starLinks(nodes)
		}
		_, err := DrawShape(c.shape, c.vertices, links, rand.New(rand.NewPCG(1, 0)))
		if !errors.Is(err, ErrTooFewNodes) {
			t.Errorf("%s on %v: err = %v, want ErrTooFewNodes", c.shape, c.vertices, err)
		}
		if !errors.Is(err, topology.ErrUnsupported) {
			t.Errorf("%s on %v: err = %v, want it to wrap topology.ErrUnsupported", c.shape, c.vertices, err)
		}
	}
}

func TestShapeMissingLinkUnsupported(t *testing.T) {
	nodes := nodeIDs(3)
	// n1-n3 is missing, so a mesh shape that must cut it cannot.
	links := []topology.Link{{"n1", "n2"}, {"n2", "n3"}}
	for seed := range uint64(seeds) {
		_, err := DrawShape(ShapeIsolate, nodes, links, rand.New(rand.NewPCG(seed, 0)))
		if err != nil {
			if !errors.Is(err, topology.ErrUnsupported) || !strings.Contains(err.Error(), "n1-n3") {
				t.Fatalf("seed %d: err = %v, want ErrUnsupported naming n1-n3", seed, err)
			}
			return
		}
	}
	t.Fatal("isolate never needed the missing link n1-n3")
}

func TestDrawShapeUnknown(t *testing.T) {
	_, err := DrawShape("triangle", nodeIDs(3), meshLinks(nodeIDs(3)), rand.New(rand.NewPCG(1, 0)))
	if err == nil || !strings.Contains(err.Error(), `"triangle"`) || !strings.Contains(err.Error(), "halves") {
		t.Fatalf("err = %v, want one naming the shape and the known shapes", err)
	}
}
