#!/usr/bin/env bash
# Runs every fuzz target for a while (default 60s each) and keeps what the
# fuzzer found interesting in the package's testdata/fuzz/, so that the plain
# test suite replays the corpus. Usage: scripts/fuzz.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
cache=$(go env GOCACHE)/fuzz/$(go list -m)
for pkg in $(go list ./...); do
  dir=${pkg#$(go list -m)/}
  for target in $(go test -list 'Fuzz.*' "./$dir" | grep '^Fuzz' || true); do
    echo "== $dir $target (${secs}s)"
    go test "./$dir" -run '^$' -fuzz "^${target}\$" -fuzztime "${secs}s"
    if [ -d "$cache/$dir/$target" ]; then
      mkdir -p "$dir/testdata/fuzz/$target"
      cp -n "$cache/$dir/$target"/* "$dir/testdata/fuzz/$target/"
    fi
  done
done
