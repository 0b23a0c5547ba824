#!/usr/bin/env bash
# gen-task-api.sh regenerates task/api from task/api/shim.proto: containerd's
# task v3 service (github.com/containerd/containerd/api, runtime/task/v3),
# generated for ttrpc only. containerd's own Go package for it also carries
# the gRPC stubs, which link all of google.golang.org/grpc into every shim:
# ~0.5 MB more memory per pod for a transport the shim never speaks.
# Needs protoc (Debian: protobuf-compiler); the Go plugins are built from the
# versions in go.mod. The output is committed; CI does not run this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
api="$(go list -m -f '{{.Dir}}' github.com/containerd/containerd/api)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp/bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$(go list -m -f '{{.Version}}' google.golang.org/protobuf)"
GOBIN="$tmp/bin" go install "github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@$(go list -m -f '{{.Version}}' github.com/containerd/ttrpc)"
GOBIN="$tmp/bin" go install github.com/containerd/protobuild/cmd/go-fix-acronym@v0.3.0
mkdir -p "$tmp/inc/github.com/containerd/containerd"
ln -s "$api" "$tmp/inc/github.com/containerd/containerd/api"
PATH="$tmp/bin:$PATH" protoc -I . -I "$tmp/inc" -I /usr/include \
	--go_out=paths=source_relative:. --go-ttrpc_out=paths=source_relative,prefix=TTRPC:. \
	task/api/shim.proto
# The Go names containerd's own generated code uses (ID, ExecID, ...).
"$tmp/bin/go-fix-acronym" -w -a '^Os' task/api/*.pb.go
"$tmp/bin/go-fix-acronym" -w -a '(Id|Io|Uuid|Os)$' task/api/*.pb.go
