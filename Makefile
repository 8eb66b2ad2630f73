# nbfsm — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION := v0.8.2
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
FUZZTIME ?= 1m
# FUZZMINIMIZE bounds the minimization of each new interesting input (go's default, 60 s, spends most of
# a 10 s run minimizing the event-sequence targets' inputs: ~6 000 executions instead of ~180 000).
FUZZMINIMIZE ?= 1000x
# WIREGUARD_GO_VERSION is the upstream wireguard-go that third_party/wireguard-go is: go.mod's require line
# (its replace line points at the copy). Evaluated only by `make wireguard-go`.
WIREGUARD_GO_VERSION = $(shell $(GO) list -m -f '{{.Version}}' golang.zx2c4.com/wireguard)

.PHONY: all build test check root-deps test-short bench bench-short bench-full soak iperf scenario docs lint proto wireguard-go demo testnet fuzz tools clean

all: build

build:
	$(GO) build ./...
	$(GO) build -o bin/netbird ./cmd/netbird

## test: every package with the race detector. As root, the end-to-end tests on real TUN
## devices in network namespaces run too; they need iproute2 and ping, installed here if missing.
test: root-deps
	$(GO) test -race -count=1 -timeout 15m ./...
	cd third_party/wireguard-go && $(GO) test -race -count=1 ./ratelimiter/

## check: the model check of the composed engine for minutes (make test runs a few seconds of it).
CHECKTIME ?= 5m
check:
	$(GO) test -count=1 -timeout 0 -run '^Test(Model|Exhaustive)$$' -v ./internal/modelcheck/ -modelcheck.duration $(CHECKTIME) -modelcheck.depth 3

root-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! { command -v ip && command -v ping && command -v iperf3; } >/dev/null; then \
	  echo "installing iproute2, iputils-ping and iperf3 for the root-only TUN tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iputils-ping iperf3 >/dev/null; fi

test-short:
	$(GO) test -short -count=1 ./...

## bench: the framework's and the data path's benchmarks (docs/benchmarks.md).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./fsm/
	$(GO) test -run '^$$' -bench FirstPacket -benchtime 20x ./client/
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./internal/wgiface/

## iperf: tunnel throughput with iperf3 between two clients on real TUN devices (root only).
iperf: root-deps
	@command -v iperf3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null; }
	$(GO) test -run '^$$' -bench TUNIperf3 -benchtime 1x -v ./client/

## bench-short: every scenario S1–S8 of `netbird bench` with small N and windows of seconds (CI).
bench-short:
	$(GO) run ./cmd/netbird bench --short

## bench-full: every scenario at full length (~50 min; docs/benchmarks.md); BENCHFLAGS="--scenario S1 --json".
bench-full:
	$(GO) run ./cmd/netbird bench $(BENCHFLAGS)

## soak: seeded random faults against >= 20 netstack clients for SOAKTIME; SOAKSEED=n replays a run.
SOAKTIME ?= 5m
SOAKSEED ?=
soak:
	NBFSM_SOAKTIME=$(SOAKTIME) NBFSM_SOAKSEED=$(SOAKSEED) $(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./cmd/netbird/internal/soak/

## scenario: idle cost with 1000 parked peers and servers down, a connected idle pair.
scenario:
	$(GO) run ./cmd/netbird scenario --peers 1000 --duration 60s

## docs: regenerate docs/diagrams from the machine Specs.
docs:
	$(GO) run ./cmd/netbird/internal/docgen/docgen docs/diagrams

## lint: gofmt, go vet, staticcheck (pinned) and the no-polling rule (every production file, not only the engine's).
lint: $(GOBIN)/staticcheck
	@out=$$(gofmt -l .); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...
	@bad=$$(grep -rnE 'time\.(Tick|NewTicker|Sleep)\(' --include='*.go' --exclude-dir=third_party . | grep -v '_test\.go:'); \
	  if [ -n "$$bad" ]; then echo "polling primitive in production code (waiting is a state, time is an event):"; echo "$$bad"; exit 1; fi
	@echo "lint: ok"

$(GOBIN)/staticcheck:
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## fuzz: every fuzz target for FUZZTIME each (1m; CI runs it with FUZZTIME=10s).
fuzz:
	@set -eo pipefail; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed -E 's/func (Fuzz[A-Za-z0-9_]*).*/\1/'); do \
	    echo "fuzz $$dir $$f ($(FUZZTIME))"; \
	    if ! $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$dir 2>&1 | tee /tmp/nbfsm-fuzz.$$$$.out; then \
	      if grep -q 'context deadline exceeded' /tmp/nbfsm-fuzz.$$$$.out && ! grep -q 'Failing input written' /tmp/nbfsm-fuzz.$$$$.out; then \
	        echo "fuzz $$dir $$f: the Go fuzz coordinator reported its own deadline, no failing input; running it once more"; \
	        $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$dir; \
	      else rm -f /tmp/nbfsm-fuzz.$$$$.out; exit 1; fi; \
	    fi; rm -f /tmp/nbfsm-fuzz.$$$$.out; \
	  done; done

## proto: regenerate the wire protocol's Go code (Debian protoc + pinned plugins).
proto:
	@command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler libprotobuf-dev; }
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	./internal/proto/gen.sh

## wireguard-go: regenerate third_party/wireguard-go, upstream $(WIREGUARD_GO_VERSION) without its tests and Windows-only code, plus third_party/wireguard-go.patch.
wireguard-go:
	@src=$$(cd / && GO111MODULE=on $(GO) mod download -json golang.zx2c4.com/wireguard@$(WIREGUARD_GO_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	  test -n "$$src" || { echo "wireguard-go $(WIREGUARD_GO_VERSION) not downloadable"; exit 1; }; \
	  rm -rf third_party/wireguard-go && cp -r "$$src" third_party/wireguard-go && chmod -R u+w third_party/wireguard-go && \
	  find third_party/wireguard-go -name '*_test.go' -delete && \
	  find third_party/wireguard-go -type d -name testdata -prune -exec rm -rf {} + && \
	  find third_party/wireguard-go -name '*_windows.go' -delete && \
	  rm -rf third_party/wireguard-go/ipc/namedpipe third_party/wireguard-go/conn/winrio && \
	  git apply --directory=third_party/wireguard-go third_party/wireguard-go.patch && \
	  echo "third_party/wireguard-go: $(WIREGUARD_GO_VERSION) + third_party/wireguard-go.patch"

## demo: nbfsm's main job on the built-in local test network (no root, no network).
demo:
	$(GO) run ./cmd/netbird demo

## testnet: a local management + signal + STUN/TURN server for manual runs.
testnet:
	$(GO) run ./cmd/netbird testnet

clean:
	rm -rf bin
