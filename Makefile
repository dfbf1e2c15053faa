# Build, test and lint wscluster. Every target installs what it needs.

GO ?= go
BIN := bin/wscluster

.PHONY: build deps test test-short lint fuzz run clean

## build: compile the node binary into bin/wscluster
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/wscluster

## deps: install redis-server and redis-sentinel for the Redis engine tests
deps:
	./scripts/install-deps.sh

## test: install the test dependencies, vet, then run every test with the race detector
test: deps lint
	$(GO) test -race -count=1 -timeout 20m ./...

## test-short: the same tests without the race detector, for a quick loop
test-short: deps
	$(GO) test -count=1 ./...

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
