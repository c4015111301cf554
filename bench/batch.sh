#!/usr/bin/env bash
# The batch endpoint against the N+1 path it replaces, on one Wharf with
# redirects on: for a 15-layer image, the registry's own CPU time per image
# (from /proc/<pid>/stat) to hand out every blob URL,
#   nplus1: GET manifest + 16 blob GETs answered 307 (redirect not followed)
#   batch:  GET /v2/<name>/manifests/<tag>/blobs (one request)
# at 16 clients, plus the cost of one signature (go test -bench).
#
# Settings: BENCH_DURATION (8s), BENCH_REPEAT (3), BENCH_CLIENTS (16),
# BENCH_LAYERS (15). Writes bench/results-batch.md.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
LAYERS=${BENCH_LAYERS:-15}
OUT=${BENCH_OUT:-$ROOT/bench/results-batch.md}

bench_tmp batch
build_tools
start_wharf batch WHARF_REDIRECT_ENABLED=true
"$LOAD" setup -target "${URL[batch]}" -repo bench/batch -layers "$LAYERS" -layer-size 64K -tags 1 2>&1 | tail -n 1 >&2

CLK=$(getconf CLK_TCK)
results=$TMP/results.jsonl
for i in $(seq "$REPEAT"); do
	for sc in nplus1 batch; do
		log "run $i/$REPEAT: $sc"
		"$LOAD" "$sc" -target "${URL[batch]}" -repo bench/batch -pid "${PID[batch]}" -clk-tck "$CLK" -clients "$CLIENTS" \
			-duration "$DURATION" -json -label "$sc" >>"$results"
	done
done

log "signature cost (go test -bench)"
sigbench=$(go test -run '^$' -bench 'BenchmarkSign$' -benchtime 200000x ./signer | awk '/^BenchmarkSign/ {print $3 " " $4}')

PYTHONPATH=$ROOT/bench python3 - "$results" "$sigbench" "$CLIENTS" "$LAYERS" >"$OUT" <<'PY'
import sys
from report import errors, load, median, table
rows = load(sys.argv[1])
n_cpu = median(rows, "server_cpu_ms_per_1k_ops", scenario="nplus1") / 1000
b_cpu = median(rows, "server_cpu_ms_per_1k_ops", scenario="batch") / 1000
n_ops, b_ops = median(rows, "ops_per_sec", scenario="nplus1"), median(rows, "ops_per_sec", scenario="batch")
layers = int(sys.argv[4])
print(f"# Batch endpoint vs N+1 ({layers}-layer image, {sys.argv[3]} clients, medians of {len(rows)//2} runs)\n")
table(["path", "requests per image", "images/s", "server CPU per image"],
      [f"N+1 (manifest + {layers+1} blob GETs → 307)", layers + 2, f"{n_ops:.0f}", f"{n_cpu:.3f} ms"],
      ["batch endpoint", 1, f"{b_ops:.0f}", f"{b_cpu:.4f} ms"])
print(f"\nCPU per image, N+1 / batch: **{n_cpu / b_cpu:.1f}×** (target ≥ 10×); batch CPU per image {b_cpu:.4f} ms (target < 0.5 ms);")
print(f"batch requests/s at {sys.argv[3]} clients: {b_ops:.0f} (target ≥ 5,000). Errors: {errors(rows)}.")
print(f"\nOne signature (HMAC-SHA256 URL, uncached): {sys.argv[2]}.")
PY
cat "$OUT"
