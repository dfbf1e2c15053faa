#!/usr/bin/env bash
# Runs the scenario matrix of the suite on the container topology: each
# node in its own container, network faults applied with nftables, and with
# netem or an NFQUEUE delay, in the nodes' network namespaces. It builds the images first
# (scripts/build-images.sh), then runs every engine with each fault set.
# It fails when any run is invalid, unknown or could not be carried out,
# lists each run's report, and prints the time the matrix took.
#
# Without a reachable Docker daemon it prints that the container matrix was
# skipped and exits 0: only the local matrix (scripts/test-cluster.sh) ran.
#
# A fault that this kernel cannot apply makes its run end as UNSUPPORTED,
# which fails the matrix unless ALLOW_UNSUPPORTED=1.
#
# Environment:
#   DURATION           length of each scenario's main phase (default 20s)
#   ENGINES            engines to cover (default "mesh redis")
#   NEMESES            fault sets to cover (default "none partition-halves
#                      partition-isolate kill pause latency,loss redis-kill");
#                      latency,loss alternates delay with jitter and packet
#                      loss; redis-kill runs with the redis engine only
#   SEED               seed of every run (default 7)
#   ALLOW_UNSUPPORTED  1 to report unsupported faults without failing
set -uo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20s}
ENGINES=${ENGINES:-mesh redis}
NEMESES=${NEMESES:-none partition-halves partition-isolate kill pause latency,loss redis-kill}
SEED=${SEED:-7}
ALLOW_UNSUPPORTED=${ALLOW_UNSUPPORTED:-0}
SUITE=bin/wscluster-suite

if ! command -v docker >/dev/null 2>&1; then
	echo "test-cluster-containers: docker is not on PATH, so the container matrix was skipped; only the local matrix ran."
	exit 0
fi
if ! docker info >/dev/null 2>&1; then
	echo "test-cluster-containers: cannot reach the Docker daemon (docker info failed), so the container matrix was skipped; only the local matrix ran."
	exit 0
fi
if [ ! -x "$SUITE" ]; then
	echo "test-cluster-containers: $SUITE is missing; run make build first" >&2
	exit 3
fi

# build-images.sh prints the image tags as shell assignments.
images=$(scripts/build-images.sh) || {
	echo "test-cluster-containers: building the images failed; see the output above" >&2
	exit 3
}
eval "$images"
export WSCLUSTER_NODE_IMAGE WSCLUSTER_REDIS_IMAGE

failed=0
summary=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT
matrix_start=$SECONDS
for engine in $ENGINES; do
	for nemesis in $NEMESES; do
		if [ "$nemesis" = redis-kill ] && [ "$engine" != redis ]; then
			continue
		fi
		echo "== $engine / $nemesis"
		run_start=$SECONDS
		$SUITE run --topology container --image "$WSCLUSTER_NODE_IMAGE" \
			--engine "$engine" --nodes 3 --workload mixed \
			--nemesis "$nemesis" --duration "$DURATION" --seed "$SEED" \
			--fault-duration 5s --nemesis-interval 3s 2>&1 | tee "$log"
		code=${PIPESTATUS[0]}
		case $code in
		0) verdict=valid ;;
		1) verdict=INVALID ;;
		2) verdict=UNKNOWN ;;
		*) verdict="NOT RUN (exit $code)" ;;
		esac
		if [ "$code" -eq 3 ] && grep -q "fault not supported" "$log"; then
			verdict=UNSUPPORTED
			[ "$ALLOW_UNSUPPORTED" = 1 ] || failed=1
		elif [ "$code" -ne 0 ]; then
			failed=1
		fi
		summary+=("$(printf '%-6s %-18s %-18s %4ss  %s' "$engine" "$nemesis" "$verdict" "$((SECONDS - run_start))" "$(readlink -f results/latest)/report.html")")
	done
done

echo
echo "== container scenario matrix"
printf '%s\n' "${summary[@]}"
echo "matrix time: $((SECONDS - matrix_start))s"
exit $failed
