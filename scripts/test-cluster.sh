#!/usr/bin/env bash
# Runs the scenario matrix of the suite on the local topology: every engine
# with no fault, partitions, kills and pauses, then every engine with
# partitions while publishers pipeline 16 publishes at 200 per second.
# Partitions leave the clients connected, so every subscriber must receive
# every publish. It fails when any run is invalid, unknown or could not be
# carried out, and lists each run's report.
#
# Environment:
#   DURATION   length of each scenario's main phase (default 20s)
#   ENGINES    engines to cover (default "mesh redis")
#   NEMESES    fault sets to cover (default "none partition kill pause")
#   PIPELINED  1 to add the pipelined runs (default 1)
#   SEED       seed of every run (default 7)
set -uo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20s}
ENGINES=${ENGINES:-mesh redis}
NEMESES=${NEMESES:-none partition kill pause}
PIPELINED=${PIPELINED:-1}
SEED=${SEED:-7}
SUITE=bin/wscluster-suite

failed=0
summary=()

# run_scenario runs one scenario and adds its verdict to the summary. The
# label names it there; every further argument goes to the suite.
run_scenario() {
	local engine=$1 nemesis=$2 label=$3
	shift 3
	echo "== $engine / $label"
	$SUITE run --topology local --engine "$engine" --nodes 3 --workload mixed \
		--nemesis "$nemesis" --duration "$DURATION" --seed "$SEED" \
		--fault-duration 5s --nemesis-interval 3s "$@"
	local code=$?
	local verdict
	case $code in
		0) verdict=valid ;;
		1) verdict=INVALID ;;
		2) verdict=UNKNOWN ;;
		*) verdict="NOT RUN (exit $code)" ;;
	esac
	[ "$code" -ne 0 ] && failed=1
	summary+=("$(printf '%-6s %-22s %-18s %s' "$engine" "$label" "$verdict" "$(readlink -f results/latest)/report.html")")
}

for engine in $ENGINES; do
	for nemesis in $NEMESES; do
		run_scenario "$engine" "$nemesis" "$nemesis"
	done
done
if [ "$PIPELINED" = 1 ]; then
	for engine in $ENGINES; do
		run_scenario "$engine" partition "pipelined, partition" --publish-window 16 --rate 200
	done
fi

echo
echo "== scenario matrix"
printf '%s\n' "${summary[@]}"
exit $failed
