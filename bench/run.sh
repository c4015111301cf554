#!/usr/bin/env bash
# Compare Wharf with CNCF Distribution 2.8 (Debian's docker-registry) on this
# machine: both run side by side on 127.0.0.1 with temporary data dirs, the
# same scenarios run against each, and a markdown table of the figures and
# the Wharf / Distribution ratios goes to stdout and bench/results-latest.md.
#
# Settings (environment):
#   BENCH_DURATION=8s    measured length of each throughput scenario
#   BENCH_REPEAT=3       runs of each throughput scenario and of the BENCH_LARGE push,
#                        alternating servers; the report takes the median of each figure
#   BENCH_WARMUP=1s      unmeasured warm-up before each
#   BENCH_CLIENTS=16     concurrent clients (manifest, tags, blob GET, push-small)
#   BENCH_LARGE=1G       size of the single-blob push measured for MiB/s
#   BENCH_RSS_SMALL=256M, BENCH_RSS_LARGE=2G   single-blob pushes for the flat-RSS check
#   BENCH_SKIP_RSS=1     skip those two pushes
#   BENCH_ONLY=a,b       run only these scenario labels (manifest-get, manifest-head,
#                        tags-list, blob-get, push-small, push-large, push-256M, push-2G)
#   BENCH_KEEP=1         keep the temp dir (data, logs, raw JSON) for inspection
#   BENCH_OUT=path       where to write the markdown (default bench/results-latest.md)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
LARGE=${BENCH_LARGE:-1G}
RSS_SMALL=${BENCH_RSS_SMALL:-256M}
RSS_LARGE=${BENCH_RSS_LARGE:-2G}
OUT=${BENCH_OUT:-$ROOT/bench/results-latest.md}
DIST_BIN=/usr/bin/docker-registry

# ---- Distribution: Debian's package, never its systemd service ----
if [[ ! -x $DIST_BIN ]]; then
	log "installing docker-registry (Distribution 2.8) with apt-get"
	# Keep the package's service from starting: policy-rc.d exit 101 is
	# Debian's "do not start services" switch. Only add one if none exists.
	added_policy=
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		added_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y docker-registry >&2 || { apt-get update >&2 && apt-get install -y docker-registry >&2; }
	[[ -n $added_policy ]] && rm -f /usr/sbin/policy-rc.d
fi
DIST_VERSION=$("$DIST_BIN" --version 2>/dev/null | awk '{print $NF}')

bench_tmp bench
build_tools

DPORT=$("$LOAD" freeport)
mkdir -p "$TMP/dist-data"
cat >"$TMP/dist.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $TMP/dist-data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$DPORT
EOF

log "starting Distribution $DIST_VERSION on 127.0.0.1:$DPORT and wharf (logs in $TMP)"
"$DIST_BIN" serve "$TMP/dist.yml" >"$TMP/dist.log" 2>&1 &
PIDS+=($!)
PID[dist]=$! URL[dist]=http://127.0.0.1:$DPORT
start_wharf wharf
"$LOAD" wait -target "${URL[dist]}" -timeout 30s || { tail -20 "$TMP/dist.log" >&2; exit 1; }

for s in wharf dist; do
	"$LOAD" setup -target "${URL[$s]}" -layers 4 -layer-size 1M -tags 10
done

# scenario LABEL SCENARIO [flags...]: run against both servers, interleaved.
scenario() {
	local label=$1 name=$2
	shift 2
	if [[ -n ${BENCH_ONLY:-} && ",$BENCH_ONLY," != *",$label,"* ]]; then
		return 0
	fi
	for s in wharf dist; do
		# Each server starts from clean page-cache writeback: otherwise a
		# big push pays for the writes of the scenario before it.
		sync
		log "$s: $label"
		kill -0 "${PID[$s]}" 2>/dev/null || { log "$s (pid ${PID[$s]}) is not running"; exit 1; }
		"$LOAD" "$name" -target "${URL[$s]}" -pid "${PID[$s]}" -label "$label" -json "$@" >>"$TMP/$s.jsonl" ||
			log "$s: $label failed"
	done
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T=(-duration "$DURATION" -warmup "$WARMUP" -clients "$CLIENTS")
for ((rep = 1; rep <= REPEAT; rep++)); do
	log "round $rep of $REPEAT"
	scenario manifest-get manifest-get "${T[@]}"
	scenario manifest-head manifest-head "${T[@]}"
	scenario tags-list tags-list "${T[@]}"
	scenario blob-get blob-get "${T[@]}"
	scenario push-small push-small "${T[@]}" -size 1M
	scenario push-large push-large -size "$LARGE"
done
if [[ -z ${BENCH_SKIP_RSS:-} ]]; then
	scenario push-256M push-large -size "$RSS_SMALL"
	scenario push-2G push-large -size "$RSS_LARGE"
fi

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
{
	echo "## Wharf vs Distribution — $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	machine_line
	echo "$(built_what); Distribution $DIST_VERSION (Debian docker-registry)."
	echo "Load tool on the same machine: each throughput run ${DURATION} after a ${WARMUP} warm-up, ${CLIENTS} clients, ${REPEAT} runs per server (median shown); server CPU from /proc/<pid>/stat, peak RSS = VmHWM reset per run (max shown)."
	echo "Load average (1/5/15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER — anything well above 2 means other work shared the 2 cores and req/s and MiB/s are noisy; CPU per request is the steadier figure."
	echo
	"$LOAD" report -a "$TMP/wharf.jsonl" -b "$TMP/dist.jsonl"
} >"$OUT"
cat "$OUT"
log "written to $OUT"
