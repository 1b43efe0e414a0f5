#!/usr/bin/env bash
# Measures the RW1 reads with vegeta (github.com/tsenart/vegeta), an
# open-loop load generator independent of kiln-bench's: the same Q1 and Q2
# requests kiln-bench sends (kiln-bench targets writes them), POSTed to
# /v1/features of a kiln serve this script starts on loopback ports the
# kernel picks, on a data directory kiln-bench loaded. Prints a row per step.
# docs/benchmarks.md says what it measures and how it differs from
# kiln-bench. Run from anywhere; paths given are taken from the working
# directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

me=scripts/vegeta-rw1.sh
vegeta_module=github.com/tsenart/vegeta/v12@v12.13.0

usage() {
  cat <<EOF
usage: $me [flags]

Measures Q1 and Q2 (POST /v1/features) open loop with vegeta at each rate:
an attack of --warmup, discarded, then one of --duration, recorded, each
sending the requests kiln-bench sends at that rate in its warm-up and its
measured period. Prints, per step: offered and achieved rate, p50, p99,
p99.9 and max latency (ms), transport errors and answers other than 200.

  --data DIR        data directory kiln-bench loaded with the same --scale
                    and --seed ("kiln-bench --data DIR" keeps it); if DIR
                    does not exist, kiln-bench loads it (and it is kept);
                    without --data, one loaded into a temporary directory
  --scale S         RW1 scale factor (default $scale)
  --seed N          seed of the history and the query draws (default $seed)
  --q1-rates LIST   Q1 rates, requests/s, comma-separated whole numbers
                    (default $q1_rates; empty: no Q1)
  --q2-rates LIST   Q2 rates (default $q2_rates; empty: no Q2)
  --duration SECS   recorded attack of each step, whole seconds, like 10s
                    (default ${duration}s)
  --warmup SECS     discarded attack before it (default ${warmup}s; 0: none)
  --timeout D       vegeta's per-request timeout (default $timeout)
  --kiln PATH       the kiln binary (default: the repository's ./cmd/kiln,
                    built)
  --kiln-bench PATH the kiln-bench binary (default: its ./cmd/kiln-bench,
                    built)
  --vegeta PATH     the vegeta binary (default: $vegeta_module,
                    built with go install into the temporary directory)
  --vegeta-args A   more flags for vegeta attack, like "-max-workers 64"
  --server-args A   more flags for kiln serve
  -h, --help        this help
EOF
}

die() {
  echo "$me: $*" >&2
  exit 2
}

scale=1 seed=1 q1_rates=300,2000,5000 q2_rates=50,100 duration=10 warmup=2 timeout=10s
kiln="" bench="" vegeta="" data="" vegeta_args="" server_args=""
while [ $# -gt 0 ]; do
  case $1 in
  -h | --help) usage; exit 0 ;;
  --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
  --data | --scale | --seed | --q1-rates | --q2-rates | --duration | --warmup | --timeout | --kiln | --kiln-bench | --vegeta | --vegeta-args | --server-args)
    [ $# -ge 2 ] || die "$1 needs a value (see --help)"
    case $1 in
    --data) data=$2 ;;
    --scale) scale=$2 ;;
    --seed) seed=$2 ;;
    --q1-rates) q1_rates=$2 ;;
    --q2-rates) q2_rates=$2 ;;
    --duration) duration=${2%s} ;;
    --warmup) warmup=${2%s} ;;
    --timeout) timeout=$2 ;;
    --kiln) kiln=$2 ;;
    --kiln-bench) bench=$2 ;;
    --vegeta) vegeta=$2 ;;
    --vegeta-args) vegeta_args=$2 ;;
    --server-args) server_args=$2 ;;
    esac
    shift 2 ;;
  *) usage >&2; die "unknown argument $1" ;;
  esac
done
[[ $duration =~ ^[1-9][0-9]*$ ]] || die "--duration $duration: give whole seconds, like 10s"
[[ $warmup =~ ^[0-9]+$ ]] || die "--warmup $warmup: give whole seconds, like 2s"
for list in "$q1_rates" "$q2_rates"; do
  [[ $list =~ ^([1-9][0-9]*(,[1-9][0-9]*)*)?$ ]] || die "rates $list: give whole requests/s, comma-separated, like 300,2000"
done
[ -n "$q1_rates$q2_rates" ] || die "no rates: give --q1-rates or --q2-rates"
for f in "$kiln" "$bench" "$vegeta"; do
  [ -z "$f" ] || [ -x "$f" ] || die "$f is not an executable"
done

tmp=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill -INT "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "$kiln" ]; then
  kiln=$tmp/kiln
  (cd "$root" && go build -o "$kiln" ./cmd/kiln)
fi
if [ -z "$bench" ]; then
  bench=$tmp/kiln-bench
  (cd "$root" && go build -o "$bench" ./cmd/kiln-bench)
fi
if [ -z "$vegeta" ]; then
  echo "$me: building vegeta ($vegeta_module)" >&2
  GOBIN=$tmp/bin go install "$vegeta_module"
  vegeta=$tmp/bin/vegeta
fi

# The summary of a report reads JSON with jq, or else python3.
if command -v jq >/dev/null 2>&1; then
  json=jq
elif [ -x /usr/bin/python3 ]; then
  json=python3
else
  die "needs jq or /usr/bin/python3 to read vegeta's report"
fi

if [ -z "$data" ]; then
  data=$tmp/data
fi
if [ -d "$data" ] && [ -n "$(ls -A "$data")" ]; then
  echo "$me: serving $data, which kiln-bench must have loaded at scale $scale with seed $seed" >&2
else
  echo "$me: loading RW1 at scale $scale (seed $seed) into $data with kiln-bench" >&2
  if ! "$bench" --kiln "$kiln" --data "$data" --scale "$scale" --seed "$seed" \
    --q1-rates= --q2-rates= --saturation-workers 0 --baseline 0 --live 0 --out "" >"$tmp/load.log" 2>&1; then
    cat "$tmp/load.log" >&2
    die "kiln-bench could not load $data"
  fi
  grep '^load:' "$tmp/load.log" >&2 || true
fi

# The RW1 project kiln-bench serves, from kiln-bench targets.
"$bench" targets --out "$tmp/project" --scale "$scale" --seed "$seed" --q1-rates= --q2-rates= --duration 1s --warmup 0s >/dev/null
# The background job opens its output files after the loop below starts
# reading them: they exist before it.
: >"$tmp/server.out"
: >"$tmp/server.err"
# shellcheck disable=SC2086 # server_args are flags, split on spaces
"$kiln" serve -c "$tmp/project/kiln.yaml" --data "$data" --addr 127.0.0.1:0 --grpc-addr= \
  --admin-addr 127.0.0.1:0 --log-level warn $server_args >"$tmp/server.out" 2>"$tmp/server.err" &
server=$!

# kiln serve prints where it serves once it listens.
url=""
for _ in $(seq 1 600); do
  url=$(sed -n 's|^kiln: [^ ]*: serving project .* on \(http://[^ ]*\)$|\1|p' "$tmp/server.out")
  [ -n "$url" ] && break
  if ! kill -0 "$server" 2>/dev/null; then
    cat "$tmp/server.out" "$tmp/server.err" >&2
    server=""
    die "kiln serve stopped before serving"
  fi
  sleep 0.1
done
[ -n "$url" ] || die "kiln serve did not say where it serves within 60 s: $(cat "$tmp/server.err")"
ready=""
for _ in $(seq 1 300); do
  if curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
[ -n "$ready" ] || die "$url/readyz did not answer 200 within 30 s: $(cat "$tmp/server.err")"
echo "$me: kiln serve on $url" >&2

# The requests, for the highest rates: a step at a lower rate sends a
# prefix of them, as kiln-bench's does.
"$bench" targets --out "$tmp/targets" --target "$url" --scale "$scale" --seed "$seed" \
  --q1-rates "$q1_rates" --q2-rates "$q2_rates" --duration "${duration}s" --warmup "${warmup}s" >&2

# attack FILE RATE SECONDS OUT: vegeta at RATE/s for SECONDS from FILE's
# targets, its results into OUT.
attack() {
  # shellcheck disable=SC2086 # vegeta_args are flags, split on spaces
  "$vegeta" attack -format=json -targets="$1" -rate="$2/1s" -duration="${3}s" \
    -keepalive=true -timeout="$timeout" $vegeta_args >"$4"
}

# summary QUERY RATE REPORT P999: a row of the table from vegeta's JSON
# report (latencies in ns) and p99.9 in ns.
summary() {
  if [ "$json" = jq ]; then
    jq -r --arg q "$1" --arg r "$2" --arg p999 "$4" '
      (.status_codes["200"] // 0) as $ok | (.status_codes["0"] // 0) as $err |
      [$q, $r, (.rate | .*10 | round / 10), (.latencies["50th"] / 1e6), (.latencies["99th"] / 1e6),
       ($p999 | tonumber / 1e6), (.latencies.max / 1e6), $err, (.requests - $ok - $err)] |
      "\(.[0])\t\(.[1])\t\(.[2])\t\(.[3])\t\(.[4])\t\(.[5])\t\(.[6])\t\(.[7])\t\(.[8])"' "$3"
  else
    /usr/bin/python3 -c '
import json, sys
q, r, path, p999 = sys.argv[1:5]
rep = json.load(open(path))
codes = rep.get("status_codes") or {}
ok, err = codes.get("200", 0), codes.get("0", 0)
lat = rep["latencies"]
print("\t".join(str(x) for x in [q, r, round(rep["rate"], 1), lat["50th"] / 1e6, lat["99th"] / 1e6,
      int(p999) / 1e6, lat["max"] / 1e6, err, rep["requests"] - ok - err]))' "$1" "$2" "$3" "$4"
  fi
}

rows=$tmp/rows
: >"$rows"
errors=$tmp/errors
: >"$errors"
step() {
  local query=$1 file=$2 rate=$3
  local warm=$((rate * warmup)) measured=$((rate * duration))
  echo "$me: $query at $rate/s for ${duration}s (+${warmup}s warm-up)" >&2
  if [ "$warm" -gt 0 ]; then
    head -n "$warm" "$file" >"$tmp/warm.json"
    attack "$tmp/warm.json" "$rate" "$warmup" /dev/null
  fi
  # The requests after the warm-up's; vegeta goes round again from the
  # first if there are fewer (kiln-bench keeps at most 256 MiB of them).
  sed -n "$((warm + 1)),$((warm + measured))p" "$file" >"$tmp/step.json"
  [ -s "$tmp/step.json" ] || cp "$file" "$tmp/step.json"
  attack "$tmp/step.json" "$rate" "$duration" "$tmp/step.bin"
  "$vegeta" report -type=json "$tmp/step.bin" >"$tmp/step.report"
  # vegeta's report has no p99.9: the nearest rank among every request's
  # latency (the third column of vegeta's CSV, in ns).
  local p999
  p999=$("$vegeta" encode -to=csv "$tmp/step.bin" | cut -d, -f3 | sort -n |
    awk '{v[NR] = $1} END {if (NR == 0) {print 0; exit} r = int(NR * 0.999); if (r < NR * 0.999) r++; print v[r]}')
  summary "$query" "$rate" "$tmp/step.report" "$p999" >>"$rows"
  if [ "$json" = jq ]; then
    jq -r --arg q "$query" --arg r "$rate" '.errors // [] | .[] | "\($q) at \($r)/s: \(.)"' "$tmp/step.report" >>"$errors"
  else
    /usr/bin/python3 -c '
import json, sys
for e in json.load(open(sys.argv[3])).get("errors") or []:
    print(f"{sys.argv[1]} at {sys.argv[2]}/s: {e}")' "$query" "$rate" "$tmp/step.report" >>"$errors"
  fi
  kill -0 "$server" 2>/dev/null || { server=""; die "kiln serve stopped: $(cat "$tmp/server.err")"; }
}

IFS=, read -r -a q1 <<<"$q1_rates"
IFS=, read -r -a q2 <<<"$q2_rates"
for r in "${q1[@]}"; do step Q1 "$tmp/targets/q1.json" "$r"; done
for r in "${q2[@]}"; do step Q2 "$tmp/targets/q2.json" "$r"; done

echo
echo "RW1 at scale $scale, seed $seed, through POST /v1/features; vegeta attack ${duration}s after a ${warmup}s warm-up, keep-alive"
awk -F'\t' 'BEGIN {
    printf "%-5s  %9s  %10s  %8s  %8s  %8s  %8s  %6s  %7s\n", "query", "offered/s", "achieved/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors", "non-200"
  }
  {printf "%-5s  %9s  %10.1f  %8.3f  %8.3f  %8.3f  %8.3f  %6d  %7d\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}' "$rows"
if [ -s "$errors" ]; then
  echo
  echo "errors (vegeta's, each once):"
  cat "$errors"
fi
