# tack: see README.md. `make run` and `make test` are all a newcomer needs.
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X tack/internal/cli.Version=$(VERSION)
export CGO_ENABLED := 1

BINS := bin/tack bin/tack-connmgr bin/tack-proxy bin/tack-handler bin/tack-zhttp-client

.PHONY: deps build run test bench fuzz lint clean

.deps.stamp: scripts/deps.sh go.mod go.sum
	./scripts/deps.sh
	@touch $@

deps: .deps.stamp

build: deps
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/tack ./cmd/runner
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/tack-connmgr ./cmd/connmgr
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/tack-proxy ./cmd/proxy
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/tack-handler ./cmd/handler
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/tack-zhttp-client ./cmd/zhttp-client

run: build
	./bin/tack --config configs/pushpin.conf

test: deps
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) test -race -count=1 -timeout 9m ./...

bench: build
	$(GO) test -run='^$$' -bench=. -benchmem ./pkg/... ./internal/...
	$(GO) run ./test/bench

fuzz: deps
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=20s ./pkg/tnetstring
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=20s ./pkg/zhttp
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=20s ./internal/routes
	$(GO) test -run='^$$' -fuzz=FuzzLoad -fuzztime=20s ./internal/config

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 ./...

clean:
	rm -rf bin .deps.stamp
