# Makefile of containerd-shim-watch-v2. `make help` lists the targets.

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.revision=$(REVISION)
BIN      := .bin
SHIM     := $(BIN)/containerd-shim-watch-v2
PREFIX   ?= /usr/local
WATCH_CONTAINERD_VERSIONS ?= 2.2 2.3 2.4
export WATCH_CONTAINERD_VERSIONS

.DEFAULT_GOAL := build
.PHONY: help build installer installer-image deps unit e2e test demo install lint critest critest-crun bench bench-k8s fuzz cluster cluster-down

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# GOEXPERIMENT=nogreenteagc: Go 1.26's new collector keeps ~150 KiB more
# resident per shim at rest (measured with TestMemLab, tests/bench); a shim's
# heap is a few hundred KiB, where the old one loses nothing.
build: ## Build the shim into .bin/containerd-shim-watch-v2 (default): static, like containerd's release shims
	CGO_ENABLED=0 GOEXPERIMENT=nogreenteagc go build -trimpath -ldflags "$(LDFLAGS) -s -w" -o $(SHIM) ./cmd/containerd-shim-watch-v2

# The node installer is a binary of its own: the shim links no TOML, D-Bus
# or HTTP client code. The deploy/ DaemonSet's image holds both.
installer: ## Build the node installer into .bin/containerd-shim-watch-installer (static)
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS) -s -w" -o $(BIN)/containerd-shim-watch-installer ./cmd/containerd-shim-watch-installer

installer-image: build installer ## Write the installer's image (shim + installer, no registry) to .bin/images/installer.tar
	go run ./tests/images -out $(BIN)/images -installer $(BIN)/containerd-shim-watch-installer -shim $(SHIM)

deps: ## Install Debian packages (crun among them), build containerd WATCH_CONTAINERD_VERSIONS and 2.4, runc, crictl, critest, Kubernetes v1.37 + etcd and test images into .bin/
	scripts/install-deps.sh

unit: ## Run the unit tests (no root needed)
	go test ./...

e2e: deps build ## Run the end-to-end tests as root for WATCH_CONTAINERD_VERSIONS ("2.2 2.3 2.4"); E2E_RUN=regexp selects tests
	@[ "$$(id -u)" = 0 ] || { echo "e2e: needs root"; exit 1; }
	WATCH_E2E_REQUIRE_KUBERNETES=1 go test -tags e2e -count=1 -timeout 60m $(if $(E2E_RUN),-run '$(E2E_RUN)') ./tests/...

test: unit fuzz e2e ## Run unit tests, each fuzz target briefly, then the end-to-end tests

# Every Fuzz* target of the module (go test -list), each for FUZZTIME, one
# after another: go test -fuzz takes one target per run. An input that
# fails is written to the package's testdata/fuzz/ and replayed by `unit`
# from then on: commit it with the fix.
FUZZTIME ?= 5s
fuzz: ## Run each fuzz target for FUZZTIME (5s); longer by hand: make fuzz FUZZTIME=10m
	@list="$$(go test -list '^Fuzz' ./...)" || { echo "$$list"; exit 1; }; \
	targets="$$(echo "$$list" | awk '/^Fuzz/ {n = n " " $$1} /^ok / {c = split(n, a, " "); for (i = 1; i <= c; i++) print $$2 ":" a[i]; n = ""}')"; \
	[ -n "$$targets" ] || { echo "fuzz: no fuzz targets found"; exit 1; }; \
	for t in $$targets; do \
		echo "fuzz: $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}" || exit 1; \
	done

critest: deps build ## Run critest against handlers runc and watch on one containerd 2.4 and compare
	@[ "$$(id -u)" = 0 ] || { echo "critest: needs root"; exit 1; }
	cd tests/critest && go test -tags e2e,critest -count=1 -timeout 40m -v -run '^TestCritest$$' .

critest-crun: deps build ## Run critest as `critest` does, with Debian's crun (crun-compat) as both handlers' BinaryName
	@[ "$$(id -u)" = 0 ] || { echo "critest: needs root"; exit 1; }
	cd tests/critest && CRITEST_RUNTIME_BINARY=crun-compat go test -tags e2e,critest -count=1 -timeout 40m -v -run '^TestCritest$$' .

bench: deps build ## Benchmark watch vs stock shim on containerd 2.4 as root (BENCH_REPS=5, ~30 min); writes bench-results/latest/
	@[ "$$(id -u)" = 0 ] || { echo "bench: needs root"; exit 1; }
	cd tests/bench && WATCH_REPO_ROOT=$(CURDIR) go test -tags 'bench e2e' -count=1 -timeout 90m -v -run '^TestBench$$' .

# bench-k8s needs only what the demo needs and the Kubernetes components,
# not deps' full set.
bench-k8s: build ## As root: on a private cluster, RuntimeClass watch vs runc: scale 0→20 Ready, shims' PSS, shim CPU per exec probe (~15 min)
	@[ "$$(id -u)" = 0 ] || { echo "bench-k8s: needs root"; exit 1; }
	scripts/install-deps.sh k8s
	cd tests/bench && WATCH_REPO_ROOT=$(CURDIR) go test -tags 'bench e2e' -count=1 -timeout 60m -v -run '^TestBenchKubernetes$$' .

# The demo builds only what it needs (containerd 2.4 and its stock shim,
# runc, crictl, the two images), not deps' full set.
demo: build ## As root: a pod on the stock runtime and one on watch, containers exiting while containerd restarts
	@[ "$$(id -u)" = 0 ] || { echo "demo: needs root"; exit 1; }
	scripts/install-deps.sh demo
	go build -tags e2e -o $(BIN)/watch-demo ./tests/demo
	$(BIN)/watch-demo

# The cluster needs only what the demo needs and the Kubernetes components
# (`install-deps.sh k8s`), not deps' full set.
cluster: build ## As root: a private single-node Kubernetes cluster, the shim installed by deploy/'s DaemonSet, in the background; kubeconfig .cluster/kubeconfig
	@[ "$$(id -u)" = 0 ] || { echo "cluster: needs root"; exit 1; }
	scripts/install-deps.sh k8s
	go build -tags e2e -o $(BIN)/watch-cluster ./tests/cluster
	$(BIN)/watch-cluster up

cluster-down: ## Stop the cluster of `make cluster` and remove everything it started
	@[ -x $(BIN)/watch-cluster ] || { echo "cluster-down: no $(BIN)/watch-cluster"; exit 1; }
	$(BIN)/watch-cluster down

install: build ## Install the shim into $(PREFIX)/bin and print the containerd config snippet
	install -D -m 0755 $(SHIM) $(DESTDIR)$(PREFIX)/bin/containerd-shim-watch-v2
	@printf '%s\n' \
		'Add to /etc/containerd/config.toml (config version 3):' \
		'' \
		'[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.watch]' \
		'  runtime_type = "io.containerd.watch.v2"' \
		'' \
		'Then restart containerd; use runtime handler "watch" (CRI) or' \
		'ctr run --runtime io.containerd.watch.v2 ...'

lint: ## Check formatting, go vet and staticcheck (built from tests/tools/lint)
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	go vet -tags e2e ./tests/...
	go build -C tests/tools/lint -o $(CURDIR)/$(BIN)/staticcheck honnef.co/go/tools/cmd/staticcheck
	$(BIN)/staticcheck ./...
	$(BIN)/staticcheck -tags e2e ./tests/...
