#!/usr/bin/env bash
# Runs Kiln's whole test suite: formatting, vet, and every test with the race
# detector. Installs what the tests need first. Run from anywhere in the repo.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
  echo "scripts/test.sh: Go is not installed (https://go.dev/doc/install)" >&2
  exit 1
fi

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt: these files need formatting (run gofmt -w):" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m ./...
