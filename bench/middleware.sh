#!/usr/bin/env bash
# What the production middleware costs: manifest GET requests/s at 16
# clients against two wharf processes on one machine, the same run,
# alternating: "on" (defaults: Prometheus metrics with the instrumented
# stores, signer and auth, request ids, and a rate limit high enough never
# to refuse, so the limiter runs on every request) and "off"
# (metrics.enabled=false, http.request_id=false, no rate limit). Both log
# at warn, so neither writes access lines. Median of BENCH_REPEAT runs
# each; prints the on/off ratio (the budget: >= 0.95) and writes
# bench/results-middleware.md.
#
#   BENCH_DURATION=8s BENCH_WARMUP=1s BENCH_CLIENTS=16 BENCH_REPEAT=3
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
OUT=${BENCH_OUT:-$ROOT/bench/results-middleware.md}

bench_tmp mw
build_tools
start() { # name env...: a wharf with the test image
	start_wharf "$@"
	"$LOAD" setup -target "${URL[$1]}" -layers 4 -layer-size 1M -tags 10 >/dev/null
}
start on WHARF_METRICS_ENABLED=true WHARF_HTTP_REQUEST_ID=true \
	WHARF_LIMITS_RATE_PULL=1000000 WHARF_LIMITS_RATE_PUSH=1000000 WHARF_LIMITS_RATE_BATCH=1000000
start off WHARF_METRICS_ENABLED=false WHARF_HTTP_REQUEST_ID=false

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for ((rep = 1; rep <= REPEAT; rep++)); do
	# Alternate which goes first, so drift in the machine's load hits both.
	order=(on off)
	((rep % 2 == 0)) && order=(off on)
	for s in "${order[@]}"; do
		log "round $rep: $s"
		"$LOAD" manifest-get -target "${URL[$s]}" -pid "${PID[$s]}" -label "$s" -json \
			-duration "$DURATION" -warmup "$WARMUP" -clients "$CLIENTS" >>"$TMP/$s.jsonl"
	done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

median() { # file field
	grep -o "\"$2\":[0-9.e+-]*" "$1" | cut -d: -f2 | sort -g | awk '{a[NR]=$1} END {printf "%.1f\n", a[int((NR+1)/2)]}'
}
ON=$(median "$TMP/on.jsonl" ops_per_sec)
OFF=$(median "$TMP/off.jsonl" ops_per_sec)
ONCPU=$(median "$TMP/on.jsonl" server_cpu_ms_per_1k_ops)
OFFCPU=$(median "$TMP/off.jsonl" server_cpu_ms_per_1k_ops)
RATIO=$(awk -v a="$ON" -v b="$OFF" 'BEGIN {printf "%.3f", a / b}')
CPURATIO=$(awk -v a="$ONCPU" -v b="$OFFCPU" 'BEGIN {printf "%.3f", a / b}')
{
	echo "# Production middleware cost: manifest GET"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ${CLIENTS} clients, ${DURATION} per run after ${WARMUP} warm-up, median of ${REPEAT} alternating runs per server."
	echo "Load average before: $LOAD_BEFORE; after: $LOAD_AFTER."
	echo
	echo "| | req/s (median) | server CPU ms / 1k req (median) | runs (req/s) |"
	echo "|---|---|---|---|"
	echo "| on (metrics, request ids, rate limiter) | $ON | $ONCPU | $(grep -o '"ops_per_sec":[0-9.]*' "$TMP/on.jsonl" | cut -d: -f2 | xargs) |"
	echo "| off | $OFF | $OFFCPU | $(grep -o '"ops_per_sec":[0-9.]*' "$TMP/off.jsonl" | cut -d: -f2 | xargs) |"
	echo
	echo "on / off: **$RATIO** of the requests/s (budget: at least 0.95); CPU per request $CPURATIO x."
} | tee "$OUT"
