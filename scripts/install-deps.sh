#!/usr/bin/env bash
# install-deps.sh: installs the Debian packages and builds the tools and test
# images the end-to-end tests need into .bin/. Idempotent: a build is skipped
# when its stamp (hash of the tool module's go.mod/go.sum, the Go version and
# the build command) matches and its outputs exist.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.bin"
TOOLS="$ROOT/tests/tools"
# crun: Debian's, the OCI runtime of the crun e2e rows and `make critest-crun`.
PACKAGES=(busybox-static libseccomp-dev pkg-config containernetworking-plugins iproute2 gcc libc6-dev crun)

log() { echo "install-deps: $*" >&2; }

install_packages() {
	local missing=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# stamp_key NAME CMD... prints the hash identifying a build.
stamp_key() {
	local name="$1"
	shift
	{
		cat "$TOOLS/$name/go.mod" "$TOOLS/$name/go.sum"
		go version
		echo "$*"
	} | sha256sum | cut -d' ' -f1
}

# build NAME STAMP OUTPUTS CMD...: runs CMD in tests/tools/NAME unless the
# stamp .bin/.stamp-STAMP is current and all OUTPUTS (under .bin) exist.
build() {
	local name="$1" stamp="$BIN/.stamp-$2" outputs="$3"
	shift 3
	local key out fresh=1
	key="$(stamp_key "$name" "$@")"
	for out in $outputs; do [ -x "$BIN/$out" ] || fresh=0; done
	if [ "$fresh" = 1 ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
		log "$outputs: up to date"
		return
	fi
	log "building $outputs"
	local start=$SECONDS
	(cd "$TOOLS/$name" && "$@")
	echo "$key" >"$stamp"
	log "built $outputs in $((SECONDS - start))s"
}

build_containerd() {
	local v="$1" pkg=github.com/containerd/containerd/v2/cmd
	mkdir -p "$BIN/containerd-$v"
	build "containerd-$v" "containerd-$v" "containerd-$v/containerd containerd-$v/ctr" \
		go build -o "$BIN/containerd-$v/" "$pkg/containerd" "$pkg/ctr"
	# The stock shim is built as containerd's Makefile builds its releases
	# (SHIM_CGO_ENABLED=0, static, -s -w), so the benchmark compares against
	# the binary users actually run.
	build "containerd-$v" "shim-$v" "containerd-$v/containerd-shim-runc-v2" \
		env CGO_ENABLED=0 go build -ldflags "-s -w -extldflags -static" -o "$BIN/containerd-$v/" "$pkg/containerd-shim-runc-v2"
}

# containerd_versions prints the containerd lines to build: those of
# WATCH_CONTAINERD_VERSIONS (default 2.2 2.3 2.4), and 2.4 always (critest
# and the benchmark run on it).
containerd_versions() {
	local v out=" ${WATCH_CONTAINERD_VERSIONS:-2.2 2.3 2.4} "
	[[ "$out" == *" 2.4 "* ]] || out+="2.4"
	for v in $out; do
		[ -d "$TOOLS/containerd-$v" ] || { log "no tests/tools/containerd-$v for containerd $v"; return 1; }
		echo "$v"
	done
}

build_tools() {
	local v versions
	versions="$(containerd_versions)"
	for v in $versions; do build_containerd "$v"; done
	build runc runc runc env CGO_ENABLED=1 go build -tags seccomp -o "$BIN/runc" github.com/opencontainers/runc
	build critools crictl crictl go build -o "$BIN/crictl" sigs.k8s.io/cri-tools/cmd/crictl
	build critools critest critest go test -c -o "$BIN/critest" sigs.k8s.io/cri-tools/cmd/critest
}

# build_images writes the OCI archives; cheap enough to always rebuild.
build_images() {
	log "building test images"
	mkdir -p "$BIN/images"
	(cd "$ROOT" &&
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/images/pause" ./tests/images/pause &&
		go run ./tests/images -out "$BIN/images" -busybox /bin/busybox -pause "$BIN/images/pause")
}

# build_demo_tools builds only what `make demo` needs: containerd 2.4 and
# its stock shim, runc and crictl. The commands are build_tools' own, so
# the two share stamps and outputs.
build_demo_tools() {
	build_containerd 2.4
	build runc runc runc env CGO_ENABLED=1 go build -tags seccomp -o "$BIN/runc" github.com/opencontainers/runc
	build critools crictl crictl go build -o "$BIN/crictl" sigs.k8s.io/cri-tools/cmd/crictl
}

# main [demo]: everything the tests need, or with "demo" only what the demo needs.
main() {
	case "${1:-}" in
	"" | demo) ;;
	*) echo "usage: $0 [demo]" >&2; exit 2 ;;
	esac
	if [ "$(id -u)" = 0 ]; then
		install_packages
	else
		log "not root: skipping apt packages"
	fi
	mkdir -p "$BIN"
	if [ "${1:-}" = demo ]; then
		build_demo_tools
	else
		build_tools
	fi
	build_images
}

main "$@"
