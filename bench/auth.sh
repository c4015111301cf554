#!/usr/bin/env bash
# What authentication costs: manifest HEAD at 16 clients against two Wharfs
# on one machine, one with auth off and one in token mode (every request
# carries a bearer token that the server verifies, from its cache after the
# first time), alternating, medians of BENCH_REPEAT runs. Target: auth costs
# at most 10% of the requests/s. Writes bench/results-auth.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DURATION=${BENCH_DURATION:-8s}
REPEAT=${BENCH_REPEAT:-3}
CLIENTS=${BENCH_CLIENTS:-16}
OUT=${BENCH_OUT:-$ROOT/bench/results-auth.md}
log() { printf '== %s\n' "$*" >&2; }

TMP=$(mktemp -d /tmp/wharf-authbench.XXXXXX)
PIDS=()
cleanup() {
	local rc=$?
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$TMP/wharf" ./cmd/wharf
go build -o "$TMP/load" ./bench/load
LOAD=$TMP/load
printf 'bench-password\n' | "$TMP/wharf" user add --htpasswd "$TMP/htpasswd" --cost 4 bench >/dev/null
cat >"$TMP/auth.yaml" <<YAML
auth:
  mode: token
  htpasswd: $TMP/htpasswd
  token:
    key_file: $TMP/token-key.pem
  policy:
    rules:
      - users: [bench]
        repos: ["bench/**"]
        actions: [pull, push, delete]
YAML

start() { # name port extra-args...
	local name=$1 port=$2
	shift 2
	WHARF_LOG_LEVEL=warn "$TMP/wharf" serve --addr "127.0.0.1:$port" --data-dir "$TMP/$name" "$@" >"$TMP/$name.log" 2>&1 &
	PIDS+=($!)
	"$LOAD" wait -target "http://127.0.0.1:$port" >/dev/null
}
OFF_PORT=$("$LOAD" freeport)
ON_PORT=$("$LOAD" freeport)
start off "$OFF_PORT"
OFF_PID=${PIDS[-1]}
start on "$ON_PORT" --config "$TMP/auth.yaml"
ON_PID=${PIDS[-1]}
"$LOAD" setup -target "http://127.0.0.1:$OFF_PORT" -tags 1 2>/dev/null
"$LOAD" setup -target "http://127.0.0.1:$ON_PORT" -tags 1 -user bench -password bench-password 2>/dev/null

CLK=$(getconf CLK_TCK)
results=$TMP/results.jsonl
for i in $(seq "$REPEAT"); do
	log "run $i/$REPEAT"
	"$LOAD" manifest-head -target "http://127.0.0.1:$OFF_PORT" -pid "$OFF_PID" -clk-tck "$CLK" -clients "$CLIENTS" -duration "$DURATION" -json -label off >>"$results"
	"$LOAD" manifest-head -target "http://127.0.0.1:$ON_PORT" -pid "$ON_PID" -clk-tck "$CLK" -clients "$CLIENTS" -duration "$DURATION" -json -label on \
		-user bench -password bench-password >>"$results"
done
python3 - "$results" "$CLIENTS" >"$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(label, key): return statistics.median(r[key] for r in rows if r["label"] == label)
off, on = med("off", "ops_per_sec"), med("on", "ops_per_sec")
coff, con = med("off", "server_cpu_ms_per_1k_ops"), med("on", "server_cpu_ms_per_1k_ops")
errs = sum(r["errors"] for r in rows)
print(f"# Auth cost: manifest HEAD, {sys.argv[2]} clients, medians of {len(rows)//2} alternating runs\n")
print("| auth | req/s | server CPU ms / 1k req |")
print("|---|--:|--:|")
print(f"| off | {off:.0f} | {coff:.1f} |")
print(f"| token (bearer on every request) | {on:.0f} | {con:.1f} |")
print(f"\nreq/s with auth / without: **{on/off:.2f}** (target ≥ 0.90); CPU per request with / without: {con/coff:.2f}. Errors: {errs}.")
PY
cat "$OUT"
