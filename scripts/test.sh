#!/usr/bin/env bash
# Runs Kiln's whole test suite: formatting, vet, and every test with the race
# detector. Installs what the tests need first. Run from anywhere in the repo.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
  echo "scripts/test.sh: Go is not installed (https://go.dev/doc/install)" >&2
  exit 1
fi

# The Redis backend's tests (store/redis) start real redis-server processes;
# KILN_REQUIRE_REDIS makes them fail, rather than skip, when it is missing.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing redis-server (Debian package) for the Redis backend's tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    # The package starts a system daemon on port 6379; the tests start their
    # own servers on free ports, so stop it.
    service redis-server stop >/dev/null 2>&1 || systemctl stop redis-server >/dev/null 2>&1 ||
      echo "scripts/test.sh: note: could not stop the redis-server daemon the package started (port 6379); the tests do not need it" >&2
  else
    echo "scripts/test.sh: redis-server and redis-cli are needed by the Redis backend's tests. Install them" >&2
    echo "  (Debian/Ubuntu: sudo apt-get install redis-server && sudo service redis-server stop)" >&2
    echo "and run this script again, or run it as root to have it do so." >&2
    exit 1
  fi
fi
export KILN_REQUIRE_REDIS=1

# The dashboard's test (internal/ui) drives headless Chromium;
# KILN_REQUIRE_CHROMIUM makes it fail, rather than skip, when it is missing.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing chromium (Debian package) for the dashboard's browser test" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "scripts/test.sh: the dashboard's browser test needs Chromium. Install it" >&2
    echo "  (Debian: sudo apt-get install chromium; Ubuntu: a chromium that is not a snap)" >&2
    echo "and run this script again, or run it as root to have it do so." >&2
    exit 1
  fi
fi
export KILN_REQUIRE_CHROMIUM=1

# The Python client's tests (python/tests) run with pytest and pandas from
# Debian's packages, which install for Debian's own python3.
python=""
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys, pytest, pandas; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing python3-pytest and python3-pandas (Debian packages) for the Python client's tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pytest python3-pandas >/dev/null
    python=/usr/bin/python3
  else
    echo "scripts/test.sh: the Python client's tests need Python 3.11+ with pytest and pandas. Install them" >&2
    echo "  (Debian/Ubuntu: sudo apt-get install python3-pytest python3-pandas)" >&2
    echo "and run this script again, or run it as root to have it do so." >&2
    exit 1
  fi
fi
# The Python client's TLS tests make their certificates with the openssl
# command.
if ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing openssl (Debian package) for the Python client's TLS tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
  else
    echo "scripts/test.sh: the Python client's TLS tests need the openssl command. Install it" >&2
    echo "  (Debian/Ubuntu: sudo apt-get install openssl) and run this script again." >&2
    exit 1
  fi
fi
# KILN_REQUIRE_PANDAS makes the tests that need pandas fail, rather than
# skip, without it.
export KILN_REQUIRE_PANDAS=1

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt: these files need formatting (run gofmt -w):" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m ./...
"$python" -m pytest -q -p no:cacheprovider python/tests
