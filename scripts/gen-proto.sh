#!/usr/bin/env bash
# Regenerates the Go code of Kiln's gRPC API (proto/kiln/v1/*.pb.go) from
# proto/kiln/v1/kiln.proto. The generated files are committed: run this after
# editing the .proto and commit both. Installs the protoc plugins at pinned
# versions into $(go env GOPATH)/bin (or GOBIN) first; protoc itself must be
# installed. Run from anywhere in the repo.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned plugin versions: protoc-gen-go matches the google.golang.org/protobuf
# of go.mod; protoc-gen-go-grpc emits code that needs grpc >= 1.64.
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

if ! command -v protoc >/dev/null 2>&1; then
  echo "scripts/gen-proto.sh: protoc is not installed." >&2
  echo "  Debian/Ubuntu: apt-get install -y protobuf-compiler" >&2
  echo "  macOS:         brew install protobuf" >&2
  echo "  other:         https://github.com/protocolbuffers/protobuf/releases" >&2
  exit 1
fi

go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"
gobin=$(go env GOBIN)
if [ -z "$gobin" ]; then
  gobin="$(go env GOPATH)/bin"
fi

protoc \
  --proto_path=proto \
  --plugin=protoc-gen-go="$gobin/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$gobin/protoc-gen-go-grpc" \
  --go_out=proto --go_opt=paths=source_relative \
  --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
  kiln/v1/kiln.proto
echo "regenerated proto/kiln/v1/kiln.pb.go and kiln_grpc.pb.go with $(protoc --version)"
