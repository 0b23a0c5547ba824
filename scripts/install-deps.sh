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

# stamp_key NAME CMD... prints the hash identifying a build: the tool
# module's go.mod, go.sum and own Go sources (kubernetes' etcd main), the
# Go version and the command.
stamp_key() {
	local name="$1"
	shift
	{
		cat "$TOOLS/$name/go.mod" "$TOOLS/$name/go.sum"
		find "$TOOLS/$name" -name '*.go' -print0 | sort -z | xargs -0 -r cat
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
	build_k8s_tools
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

# k8s_ldflags prints the version ldflags Kubernetes' own build sets
# (hack/lib/version.sh), from the tool module's pinned k8s.io/kubernetes,
# so the binaries report v1.37.x and not v0.0.0; stripped as its releases are.
k8s_ldflags() {
	local v major minor flags="-s -w" pkg
	v="$(cd "$TOOLS/kubernetes" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
	major="${v#v}" && major="${major%%.*}"
	minor="${v#v*.}" && minor="${minor%%.*}"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	echo "$flags"
}

# build_k8s_tools builds the single-node cluster's components: the
# Kubernetes control plane, kubelet and kubectl at the version
# tests/tools/kubernetes pins, and an etcd around the etcd server package
# that version pins. Static (CGO_ENABLED=0), as Kubernetes releases them.
build_k8s_tools() {
	local pkg=k8s.io/kubernetes/cmd
	build kubernetes kubernetes "kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl etcd" \
		env CGO_ENABLED=0 go build -trimpath -ldflags "$(k8s_ldflags)" -o "$BIN/" \
		"$pkg/kube-apiserver" "$pkg/kube-controller-manager" "$pkg/kube-scheduler" "$pkg/kubelet" "$pkg/kubectl" ./etcd
}

# main [demo|k8s]: everything the tests need, the Kubernetes components
# of the cluster scenarios included; with "demo" only what the demo needs;
# with "k8s" what the demo needs plus the Kubernetes components (for
# `make cluster` and `make bench-k8s`).
main() {
	case "${1:-}" in
	"" | demo | k8s) ;;
	*) echo "usage: $0 [demo|k8s]" >&2; exit 2 ;;
	esac
	if [ "$(id -u)" = 0 ]; then
		install_packages
	else
		log "not root: skipping apt packages"
	fi
	mkdir -p "$BIN"
	case "${1:-}" in
	demo) build_demo_tools ;;
	k8s) build_demo_tools && build_k8s_tools ;;
	*) build_tools ;;
	esac
	build_images
}

main "$@"
