#!/usr/bin/env bash
# The wire benchmark: privint's Authorize against a bare tonic server answering a fixed
# response (examples/bare_authorizer.rs), with the same independent client (h2load), in
# alternating rounds; then privint's latency at half of its own saturation. See BENCHMARKS.md.
#
# Usage: bash benches/wire.sh [ROUNDS] [REQUESTS_PER_ROUND]   (needs h2load: nghttp2-client)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
requests=${2:-200000}
command -v h2load >/dev/null || { echo "h2load is missing: apt-get install nghttp2-client" >&2; exit 1; }
cargo build --quiet --release --bin privint --example bare_authorizer
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
bin=target/release/privint
bare=target/release/examples/bare_authorizer
privint_port=50071
bare_port=50072

APP__DATABASE_URL="sqlite://$dir/wire.db" APP__LISTEN_ADDR="127.0.0.1:$privint_port" \
  APP__METRICS_ADDR= APP__LOG_FILTER=warn "$bin" serve --dev 2>"$dir/privint.log" &
"$bare" serve "127.0.0.1:$bare_port" &
export PRIVINT_ADDR="http://127.0.0.1:$privint_port"
PRIVINT_JWT=$("$bin" dev-jwt --agency agency1)
export PRIVINT_JWT
for _ in $(seq 100); do "$bin" scopes >/dev/null 2>&1 && break; sleep 0.1; done
token=$("$bin" create --agency agency1 --location loc1 --name wire --scope contacts.readonly --json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
# h2load counts HTTP 200 as success whatever the grpc-status: one real call first.
echo "one real call: $("$bin" authorize --token "$token" --location loc1 --scope contacts.readonly)"
"$bare" request "$token" loc1 "$dir/request.bin"

h2() { # PORT [h2load options...]: prints requests per second
  local port=$1; shift
  h2load -t 1 -d "$dir/request.bin" -H 'content-type: application/grpc' -H 'te: trailers' "$@" \
    "http://127.0.0.1:$port/privint.v1.TokenAuthorizer/Authorize" >"$dir/h2load.out"
  grep -q "0 failed, 0 errored" "$dir/h2load.out" || { cat "$dir/h2load.out" >&2; exit 1; }
  awk '/^finished in/ { print $4 }' "$dir/h2load.out"
}

echo "saturation, h2load -c 4 -m 16 -t 1 -n $requests (req/s):"
privint_rates=()
for round in $(seq "$rounds"); do
  bare_rate=$(h2 "$bare_port" -c 4 -m 16 -n "$requests")
  privint_rate=$(h2 "$privint_port" -c 4 -m 16 -n "$requests")
  privint_rates+=("$privint_rate")
  echo "  round $round: bare $bare_rate, privint $privint_rate, ratio $(python3 -c "print(f'{$privint_rate / $bare_rate:.2f}')")"
done
median=$(printf '%s\n' "${privint_rates[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
half=$(python3 -c "print(int($median / 2 / 4))")
echo "latency at half of privint's saturation ($((half * 4)) req/s over 4 connections, one call in flight each):"
h2 "$privint_port" -c 4 -m 1 --rps "$half" -n $((half * 4 * 10)) --log-file="$dir/latency.log" >/dev/null
python3 - "$dir/latency.log" <<'PY'
import sys
times = sorted(int(line.split("\t")[2]) for line in open(sys.argv[1]) if line.strip())
pick = lambda p: times[min(len(times) - 1, int(len(times) * p))] / 1000
print(f"  p50 {pick(0.5):.3f} ms, p99 {pick(0.99):.3f} ms, p99.9 {pick(0.999):.3f} ms, max {times[-1] / 1000:.3f} ms ({len(times)} calls)")
PY
