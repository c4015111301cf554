#!/usr/bin/env bash
# What authentication costs: manifest HEAD at 16 clients against two Wharfs
# on one machine, one with auth off and one in token mode (every request
# carries a bearer token that the server verifies, from its cache after the
# first time), alternating, medians of BENCH_REPEAT runs. Target: auth costs
# at most 10% of the requests/s. Writes bench/results-auth.md.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
OUT=${BENCH_OUT:-$ROOT/bench/results-auth.md}

bench_tmp authbench
build_tools
printf 'bench-password\n' | "$WHARF" user add --htpasswd "$TMP/htpasswd" --cost 4 bench >/dev/null
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

start_wharf off
start_wharf on -- --config "$TMP/auth.yaml"
LOGIN=(-user bench -password bench-password)
"$LOAD" setup -target "${URL[off]}" -tags 1 2>/dev/null
"$LOAD" setup -target "${URL[on]}" -tags 1 "${LOGIN[@]}" 2>/dev/null

CLK=$(getconf CLK_TCK)
results=$TMP/results.jsonl
for i in $(seq "$REPEAT"); do
	log "run $i/$REPEAT"
	for s in off on; do
		login=()
		[[ $s == on ]] && login=("${LOGIN[@]}")
		"$LOAD" manifest-head -target "${URL[$s]}" -pid "${PID[$s]}" -clk-tck "$CLK" -clients "$CLIENTS" -duration "$DURATION" -json -label "$s" \
			"${login[@]}" >>"$results"
	done
done
PYTHONPATH=$ROOT/bench python3 - "$results" "$CLIENTS" >"$OUT" <<'PY'
import sys
from report import errors, load, median, table
rows = load(sys.argv[1])
off, on = median(rows, "ops_per_sec", label="off"), median(rows, "ops_per_sec", label="on")
coff, con = median(rows, "server_cpu_ms_per_1k_ops", label="off"), median(rows, "server_cpu_ms_per_1k_ops", label="on")
print(f"# Auth cost: manifest HEAD, {sys.argv[2]} clients, medians of {len(rows)//2} alternating runs\n")
table(["auth", "req/s", "server CPU ms / 1k req"],
      ["off", f"{off:.0f}", f"{coff:.1f}"],
      ["token (bearer on every request)", f"{on:.0f}", f"{con:.1f}"])
print(f"\nreq/s with auth / without: **{on/off:.2f}** (target ≥ 0.90); CPU per request with / without: {con/coff:.2f}. Errors: {errors(rows)}.")
PY
cat "$OUT"
