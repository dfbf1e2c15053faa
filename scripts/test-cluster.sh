#!/usr/bin/env bash
# Runs the scenario matrix of the suite on the local topology: every engine
# with no fault, partitions, kills and pauses. It fails when any run is
# invalid, unknown or could not be carried out, and lists each run's report.
#
# Environment:
#   DURATION  length of each scenario's main phase (default 20s)
#   ENGINES   engines to cover (default "mesh redis")
#   NEMESES   fault sets to cover (default "none partition kill pause")
#   SEED      seed of every run (default 7)
set -uo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20s}
ENGINES=${ENGINES:-mesh redis}
NEMESES=${NEMESES:-none partition kill pause}
SEED=${SEED:-7}
SUITE=bin/wscluster-suite

failed=0
summary=()
for engine in $ENGINES; do
	for nemesis in $NEMESES; do
		echo "== $engine / $nemesis"
		$SUITE run --topology local --engine "$engine" --nodes 3 --workload mixed \
			--nemesis "$nemesis" --duration "$DURATION" --seed "$SEED" \
			--fault-duration 5s --nemesis-interval 3s
		code=$?
		case $code in
			0) verdict=valid ;;
			1) verdict=INVALID ;;
			2) verdict=UNKNOWN ;;
			*) verdict="NOT RUN (exit $code)" ;;
		esac
		[ "$code" -ne 0 ] && failed=1
		summary+=("$(printf '%-6s %-10s %-18s %s' "$engine" "$nemesis" "$verdict" "$(readlink -f results/latest)/report.html")")
	done
done

echo
echo "== scenario matrix"
printf '%s\n' "${summary[@]}"
exit $failed
