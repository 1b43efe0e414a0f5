#!/usr/bin/env bash
# Regenerates docs/img/ui.png, the picture of the dashboard in
# docs/operations.md: runs kiln demo (the example project with a month of
# history and live pushes) on free ports, opens its dashboard in headless
# Chromium while reading features through it, and saves the page once the
# charts hold a minute and a half. Needs chromium on PATH. Run from anywhere
# in the repo; takes about two minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "scripts/screenshot-ui.sh: needs Chromium (Debian: sudo apt-get install chromium)" >&2
  exit 1
fi

tmp=$(mktemp -d)
demo=""
cleanup() {
  if [ -n "$demo" ]; then kill "$demo" 2>/dev/null && wait "$demo" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/kiln" ./cmd/kiln
go build -o "$tmp/screenshot" ./internal/ui/screenshot
"$tmp/kiln" demo --addr 127.0.0.1:0 --grpc-addr= --admin-addr 127.0.0.1:0 --every 500ms >"$tmp/demo.out" 2>&1 &
demo=$!

# kiln demo prints its admin listener's URL once its history is loaded.
admin=""
for _ in $(seq 1 600); do
  admin=$(sed -n 's|^Metrics (Prometheus) are at \(http://[^ ]*\)/metrics\.$|\1|p' "$tmp/demo.out")
  [ -n "$admin" ] && break
  if ! kill -0 "$demo" 2>/dev/null; then
    echo "scripts/screenshot-ui.sh: kiln demo stopped:" >&2
    cat "$tmp/demo.out" >&2
    exit 1
  fi
  sleep 0.2
done
if [ -z "$admin" ]; then
  echo "scripts/screenshot-ui.sh: kiln demo did not start within 2 minutes:" >&2
  cat "$tmp/demo.out" >&2
  exit 1
fi

mkdir -p docs/img
"$tmp/screenshot" -admin "$admin" -out docs/img/ui.png "$@"
echo "scripts/screenshot-ui.sh: wrote docs/img/ui.png"
