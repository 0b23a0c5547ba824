#!/usr/bin/env bash
# demo.sh: starts a private containerd 2.4 with the watch shim, runs a pod
# with two containers (CRI handler "watch") and one `ctr run --runtime
# io.containerd.watch.v2` container, prints task events and exit codes as
# they happen, then cleans everything up. The work is done by TestDemo in
# tests/e2e, which reuses the test harness and its cleanup.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: needs root" >&2; exit 1; }
[ -x .bin/containerd-shim-watch-v2 ] || { echo "demo.sh: .bin/containerd-shim-watch-v2 missing (make build)" >&2; exit 1; }
WATCH_DEMO=1 WATCH_CONTAINERD_VERSIONS="${WATCH_CONTAINERD_VERSIONS:-2.4}" \
	exec go test -tags e2e -count=1 -v -run '^TestDemo$' ./tests/e2e/
