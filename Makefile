# Build, test and lint wscluster. Every target installs what it needs.

GO ?= go
# The suite removes its own containers and networks, so testcontainers-go's
# reaper (which would need an image pulled from a registry) stays off.
export TESTCONTAINERS_RYUK_DISABLED = true
BIN := bin/wscluster
SUITE := bin/wscluster-suite

.PHONY: build bench bench-smoke images deps test test-images test-short test-cluster test-cluster-local test-cluster-containers test-all nemesis lint fuzz run clean

## build: compile the node binary and the suite into bin/, without the race detector
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/wscluster
	CGO_ENABLED=0 $(GO) build -trimpath -o $(SUITE) ./cmd/wscluster-suite

## images: build wscluster/node:dev and wscluster/redis:dev FROM scratch, without a registry
images:
	./scripts/build-images.sh

## deps: install redis-server and redis-sentinel for the Redis engine tests
deps:
	./scripts/install-deps.sh

## test: install the test dependencies, vet, build the images when Docker is reachable, then run every test with the race detector
test: deps lint test-images
	$(GO) test -race -count=1 -timeout 20m ./...

# test-images builds the images that the container topology's tests start;
# without a reachable Docker daemon those tests skip, unless CI is set.
test-images:
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
		./scripts/build-images.sh; \
	else \
		echo "test: no Docker daemon reachable, so the container topology's tests will skip"; \
	fi

## test-short: the same tests without the race detector, for a quick loop
test-short: deps
	$(GO) test -count=1 ./...

## test-cluster-local: the suite's scenario matrix on local processes (mesh and redis x none, partition, kill, pause)
test-cluster-local: deps build
	./scripts/test-cluster.sh

## test-cluster-containers: the matrix on containers (mesh and redis x none, partitions, kill, pause, loss, Redis outage); skipped without Docker
test-cluster-containers: deps build
	./scripts/test-cluster-containers.sh

## test-cluster: the suite's scenario matrix: local processes, then containers when Docker is available
test-cluster: test-cluster-local test-cluster-containers

## test-all: what CI runs: the unit tests, the scenario matrix, then a bench smoke run
test-all: test test-cluster bench-smoke

## nemesis: one 60 s scenario on a 3-node mesh with partitions, kills and pauses, ending in an HTML report
NEMESIS_FLAGS ?= --topology local --engine mesh --nodes 3 --workload mixed --nemesis partition,kill,pause --duration 60s --seed 7
nemesis: deps build
	$(SUITE) run $(NEMESIS_FLAGS)

## bench: throughput, latency and idle memory of our engines against the centrifuge peer (several minutes; results/bench/)
bench: deps
	$(GO) run ./cmd/wscluster-suite bench

## bench-smoke: a quick run of every bench workload on every system, to keep the bench working
bench-smoke: deps
	$(GO) run ./cmd/wscluster-suite bench --smoke --out "$$(mktemp -d)"

## lint: go vet and a gofmt check
lint:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on: $$unformatted"; exit 1; fi

## fuzz: run the request decoder fuzzer for FUZZTIME (default 60s)
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./rpc/ -run '^$$' -fuzz FuzzDecodeRequest -fuzztime $(FUZZTIME)

## run: build and start one node on 127.0.0.1:8080
run: build
	$(BIN) serve --listen 127.0.0.1:8080 --node-id n1

## clean: remove build outputs
clean:
	rm -rf bin

help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## //'
