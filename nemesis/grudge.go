package nemesis

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/wscluster/wscluster/topology"
)

// Partition shapes, as named in --nemesis partition-<shape> and as the first
// word of a partition's Detail.
const (
	ShapeHalves  = "halves"
	ShapeIsolate = "isolate"
	ShapeRing    = "ring"
	ShapeBridge  = "bridge"
	ShapeRandom  = "random"
)

// ErrTooFewNodes is returned, wrapped together with topology.ErrUnsupported,
// by a shape that needs more nodes than the topology has, so that the
// nemesis fails the run instead of injecting nothing.
var ErrTooFewNodes = errors.New("nemesis: too few nodes for the partition shape")

// ShapeNames lists the partition shapes in the order --nemesis partition
// draws from.
func ShapeNames() []string {
	return []string{ShapeHalves, ShapeIsolate, ShapeRing, ShapeBridge, ShapeRandom}
}

// Cut is one partition drawn by a shape.
type Cut struct {
	// Shape is the shape that was cut. On the Redis engine, ring and bridge
	// are cut as halves (see Ring and Bridge).
	Shape string
	// Groups are the intended sides: two for halves and isolate, the two
	// halves and then the bridge node alone for bridge, the ring order as
	// one group for ring, and none for random.
	Groups [][]string
	// Links are the links to cut, in the order of the topology's links.
	Links []topology.Link
	// Nodes are the vertices that lose at least one link, in vertex order.
	Nodes []string
	// Detail describes the cut for people, e.g. "halves [n1] | [n2 n3]".
	Detail string
}

// ShapeFunc draws one partition of a shape. vertices are the node ids in id
// order, followed by topology.Redis on the Redis engine. links are the links
// the topology can cut (topology.Topology.Links). A ShapeFunc draws from rng
// in a fixed order, so the same rng state always gives the same cut.
type ShapeFunc func(vertices []string, links []topology.Link, rng *rand.Rand) (Cut, error)

// DrawShape draws a partition of the named shape.
func DrawShape(shape string, vertices []string, links []topology.Link, rng *rand.Rand) (Cut, error) {
	fn := map[string]ShapeFunc{
		ShapeHalves:  Halves,
		ShapeIsolate: Isolate,
		ShapeRing:    Ring,
		ShapeBridge:  Bridge,
		ShapeRandom:  Random,
	}[shape]
	if fn == nil {
		return Cut{}, fmt.Errorf("nemesis: unknown partition shape %q: use one of %s", shape, strings.Join(ShapeNames(), ", "))
	}
	return fn(vertices, links, rng)
}

// MinNodes returns how many nodes a shape needs: on the Redis engine (star
// true) the count excludes Redis itself.
func MinNodes(shape string, star bool) int {
	switch {
	case star && (shape == ShapeIsolate || shape == ShapeRandom):
		return 1
	case star:
		return 2
	case shape == ShapeRing || shape == ShapeBridge:
		return 3
	default:
		return 2
	}
}

// Halves splits the nodes at random into two sides of floor(n/2) and
// ceil(n/2) nodes and cuts every link between the sides. On the Redis engine
// Redis joins one side at random and the other side loses its Redis link.
// Because nodes talk only through Redis there, each node of that side is
// then alone, not in a group with the others of its side.
func Halves(vertices []string, links []topology.Link, rng *rand.Rand) (Cut, error) {
	if isStar(vertices) {
		return starHalves(ShapeHalves, vertices, links, rng, redisWithRandomSide)
	}
	if err := checkSize(ShapeHalves, vertices); err != nil {
		return Cut{}, err
	}
	perm := rng.Perm(len(vertices))
	left := pickInOrder(vertices, perm[:len(vertices)/2])
	right := without(vertices, left)
	return sides(ShapeHalves, vertices, links, left, right)
}

// Isolate cuts one random node from every other vertex. On the Redis engine
// that is one node cut from Redis.
func Isolate(vertices []string, links []topology.Link, rng *rand.Rand) (Cut, error) {
	if err := checkSize(ShapeIsolate, vertices); err != nil {
		return Cut{}, err
	}
	nodes := without(vertices, []string{topology.Redis})
	alone := []string{nodes[rng.IntN(len(nodes))]}
	return sides(ShapeIsolate, vertices, links, alone, without(vertices, alone))
}

// Ring cuts a majorities ring, like the majorities-ring grudge of Jepsen's
// jepsen.nemesis namespace: every node still sees a majority of the nodes,
// itself included, but no two nodes see the same majority. Cuts here are symmetric, so the ring is drawn
// as a random cycle in which each node keeps its links to the k nearest
// nodes on each side, k = ceil(floor(n/2)/2), and loses the others. With 5
// nodes each node sees itself and its two ring neighbors (3 of 5) and 5
// links are cut. With 4 nodes each sees 3 of 4.
//
// With 3 nodes a symmetric ring cannot exist: each node would need exactly
// one link. Ring then cuts one random link, which leaves a path a-b-c: a and
// c each see a different majority of 2 and b sees all 3.
//
// On the Redis engine nodes see each other only through Redis, so no node
// can see a majority that another does not. Ring is cut there as halves with
// Redis on the larger side: a majority of nodes keeps the backplane.
func Ring(vertices []string, links []topology.Link, rng *rand.Rand) (Cut, error) {
	if isStar(vertices) {
		return starHalves(ShapeRing, vertices, links, rng, redisWithLargerSide)
	}
	if err := checkSize(ShapeRing, vertices); err != nil {
		return Cut{}, err
	}
	n := len(vertices)
	order := make([]string, n)
	pos := make(map[string]int, n)
	for i, p := range rng.Perm(n) {
		order[i] = vertices[p]
		pos[vertices[p]] = i
	}
	cut := Cut{Shape: ShapeRing, Groups: [][]string{order}}
	ring := strings.Join(order, "-")
	if n == 3 {
		// Open the ring between the last and the first node.
		apart := func(a, b string) bool { return pos[a]+pos[b] == 2 && pos[a] != pos[b] }
		cut.Detail = fmt.Sprintf("ring %s, open between %s and %s", ring, order[2], order[0])
		return finish(cut, vertices, links, apart)
	}
	k := (n/2 + 1) / 2
	apart := func(a, b string) bool {
		d := abs(pos[a] - pos[b])
		return min(d, n-d) > k
	}
	cut.Detail = fmt.Sprintf("ring %s, each node sees %d per side", ring, k)
	return finish(cut, vertices, links, apart)
}

// Bridge puts one random node between two halves of the others: the halves
// cannot see each other and the bridge node sees both. With 3 nodes that is
// a path a-b-c, the same cut as Ring gives.
//
// On the Redis engine only Redis can sit between two groups, so Bridge is
// cut as halves with Redis on the smaller side: a minority of nodes keeps
// the backplane.
func Bridge(vertices []string, links []topology.Link, rng *rand.Rand) (Cut, error) {
	if isStar(vertices) {
		return starHalves(ShapeBridge, vertices, links, rng, redisWithSmallerSide)
	}
	if err := checkSize(ShapeBridge, vertices); err != nil {
		return Cut{}, err
	}
	perm := rng.Perm(len(vertices))
	bridge := vertices[perm[0]]
	rest := perm[1:]
	left := pickInOrder(vertices, rest[:len(rest)/2])
	right := pickInOrder(vertices, rest[len(rest)/2:])
	apart := func(a, b string) bool {
		return slices.Contains(left, a) && slices.Contains(right, b) ||
			slices.Contains(right, a) && slices.Contains(left, b)
	}
	cut := Cut{
		Shape:  ShapeBridge,
		Groups: [][]string{left, right, {bridge}},
		Detail: fmt.Sprintf("bridge %s | %s via %s", bracket(left), bracket(right), bridge),
	}
	return finish(cut, vertices, links, apart)
}

// Random cuts a random non-empty subset of the links: each link with
// probability 1/2, and one random link when that picks none.
func Random(vertices []string, links []topology.Link, rng *rand.Rand) (Cut, error) {
	if err := checkSize(ShapeRandom, vertices); err != nil {
		return Cut{}, err
	}
	if len(links) == 0 {
		return Cut{}, fmt.Errorf("nemesis: partition random: the topology has no links to cut: %w", topology.ErrUnsupported)
	}
	chosen := randomSubset(links, rng)
	cut := Cut{
		Shape:  ShapeRandom,
		Links:  chosen,
		Nodes:  endpointsInOrder(vertices, chosen),
		Detail: "random cut " + formatLinks(chosen),
	}
	return cut, nil
}

// randomSubset returns a random non-empty subset of links in their order.
// It draws once per link and once more when the first draws picked none.
func randomSubset(links []topology.Link, rng *rand.Rand) []topology.Link {
	var chosen []topology.Link
	for _, l := range links {
		if rng.IntN(2) == 1 {
			chosen = append(chosen, l)
		}
	}
	if len(chosen) == 0 {
		chosen = append(chosen, links[rng.IntN(len(links))])
	}
	return chosen
}

// redisSide is the side Redis joins in a halves cut on the Redis engine.
type redisSide int

const (
	redisWithRandomSide redisSide = iota
	redisWithLargerSide
	redisWithSmallerSide
)

// starHalves cuts the Redis-engine form of halves, ring and bridge: the
// nodes split into floor(n/2) and ceil(n/2), Redis joins the side that
// placement names, and the nodes of the other side lose their Redis link.
func starHalves(requested string, vertices []string, links []topology.Link, rng *rand.Rand, placement redisSide) (Cut, error) {
	if err := checkSize(requested, vertices); err != nil {
		return Cut{}, err
	}
	nodes := without(vertices, []string{topology.Redis})
	perm := rng.Perm(len(nodes))
	small := pickInOrder(nodes, perm[:len(nodes)/2])
	large := without(nodes, small)
	withRedis := placement == redisWithLargerSide
	if placement == redisWithRandomSide {
		withRedis = rng.IntN(2) == 1
	}
	if withRedis {
		large = append(large, topology.Redis)
	} else {
		small = append(small, topology.Redis)
	}
	cut, err := sides(ShapeHalves, vertices, links, small, large)
	if err == nil && requested != ShapeHalves {
		cut.Detail += fmt.Sprintf(" (%s on the redis engine)", requested)
	}
	return cut, err
}

// sides cuts every link between two groups and describes it as
// "<shape> [a b] | [c d]".
func sides(shape string, vertices []string, links []topology.Link, left, right []string) (Cut, error) {
	apart := func(a, b string) bool {
		return slices.Contains(left, a) != slices.Contains(left, b)
	}
	cut := Cut{
		Shape:  shape,
		Groups: [][]string{left, right},
		Detail: fmt.Sprintf("%s %s | %s", shape, bracket(left), bracket(right)),
	}
	return finish(cut, vertices, links, apart)
}

// finish fills cut.Links with every link whose endpoints must not see each
// other, and cut.Nodes with their endpoints. On a mesh every pair that must
// not see each other needs a link to cut, and a missing one means that the
// topology cannot make this shape. On the Redis engine nodes have no links
// between each other, so only links to Redis are checked.
func finish(cut Cut, vertices []string, links []topology.Link, apart func(a, b string) bool) (Cut, error) {
	have := make(map[topology.Link]bool, 2*len(links))
	for _, l := range links {
		have[l] = true
		have[topology.Link{l[1], l[0]}] = true
	}
	star := isStar(vertices)
	for i, a := range vertices {
		for _, b := range vertices[i+1:] {
			needsLink := !star || a == topology.Redis || b == topology.Redis
			if needsLink && apart(a, b) && !have[topology.Link{a, b}] {
				return Cut{}, fmt.Errorf("nemesis: partition %s needs to cut %s-%s, which is not among the topology's links: %w",
					cut.Shape, a, b, topology.ErrUnsupported)
			}
		}
	}
	for _, l := range links {
		if apart(l[0], l[1]) {
			cut.Links = append(cut.Links, l)
		}
	}
	cut.Nodes = endpointsInOrder(vertices, cut.Links)
	return cut, nil
}

// checkSize fails when vertices has fewer nodes than the shape needs.
func checkSize(shape string, vertices []string) error {
	star := isStar(vertices)
	nodes := len(vertices)
	if star {
		nodes--
	}
	if need := MinNodes(shape, star); nodes < need {
		return fmt.Errorf("%w: %s needs at least %d nodes, the topology has %d: %w",
			ErrTooFewNodes, shape, need, nodes, topology.ErrUnsupported)
	}
	return nil
}

func isStar(vertices []string) bool {
	return slices.Contains(vertices, topology.Redis)
}

// pickInOrder returns the vertices at the given indexes, in vertex order.
func pickInOrder(vertices []string, indexes []int) []string {
	var picked []string
	for i, v := range vertices {
		if slices.Contains(indexes, i) {
			picked = append(picked, v)
		}
	}
	return picked
}

// without returns the vertices not in drop, in order.
func without(vertices, drop []string) []string {
	var remaining []string
	for _, v := range vertices {
		if !slices.Contains(drop, v) {
			remaining = append(remaining, v)
		}
	}
	return remaining
}

// endpointsInOrder returns the vertices that are an endpoint of a link, in
// vertex order.
func endpointsInOrder(vertices []string, links []topology.Link) []string {
	var ends []string
	for _, v := range vertices {
		if slices.ContainsFunc(links, func(l topology.Link) bool { return l[0] == v || l[1] == v }) {
			ends = append(ends, v)
		}
	}
	return ends
}

func bracket(group []string) string {
	return "[" + strings.Join(group, " ") + "]"
}

// formatLinks writes links as "n1-n2 n2-redis".
func formatLinks(links []topology.Link) string {
	parts := make([]string, len(links))
	for i, l := range links {
		parts[i] = l[0] + "-" + l[1]
	}
	return strings.Join(parts, " ")
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
