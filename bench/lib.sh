# shellcheck shell=bash
# The start every bench script shares. Source it; do not execute it.
#
#   bench_tmp NAME        a temp dir $TMP; on exit (also Ctrl-C) every PID in
#                         PIDS is killed and waited for, cleanup_hook runs if
#                         the script defines one, and $TMP is removed unless
#                         BENCH_KEEP=1
#   build_tools           builds wharf and the load tool: $WHARF, $LOAD
#   start_wharf NAME [VAR=VALUE...] [-- SERVE-FLAGS...]
#                         a `wharf serve` (log level warn unless VAR says
#                         otherwise) on a free 127.0.0.1 port, data in
#                         $TMP/NAME, log in $TMP/NAME.log, waited for; sets
#                         URL[NAME] and PID[NAME]
#
# Settings every script reads: BENCH_DURATION (8s), BENCH_REPEAT (3),
# BENCH_WARMUP (1s), BENCH_CLIENTS (16), BENCH_KEEP.

# Variables here are used by the scripts that source this file.
# shellcheck disable=SC2034
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${BENCH_DURATION:-8s}
REPEAT=${BENCH_REPEAT:-3}
WARMUP=${BENCH_WARMUP:-1s}
CLIENTS=${BENCH_CLIENTS:-16}
PIDS=()
declare -A URL=() PID=()

log() { printf '== %s %s\n' "$(date -u +%T)" "$*" >&2; }

bench_tmp() {
	TMP=$(mktemp -d "/tmp/wharf-$1.XXXXXX")
	chmod 755 "$TMP"
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	local rc=$? p
	if declare -F cleanup_hook >/dev/null; then cleanup_hook || true; fi
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [[ -n ${BENCH_KEEP:-} ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
	exit "$rc"
}

build_tools() {
	log "building wharf and the load tool into $TMP/bin"
	go build -o "$TMP/bin/wharf" ./cmd/wharf
	go build -o "$TMP/bin/load" ./bench/load
	WHARF=$TMP/bin/wharf LOAD=$TMP/bin/load
}

start_wharf() {
	local name=$1 port envs=()
	shift
	while [[ $# -gt 0 && $1 != -- ]]; do
		envs+=("$1")
		shift
	done
	[[ ${1:-} == -- ]] && shift
	port=$("$LOAD" freeport)
	env WHARF_LOG_LEVEL=warn "${envs[@]}" "$WHARF" serve --addr "127.0.0.1:$port" --data-dir "$TMP/$name" "$@" >"$TMP/$name.log" 2>&1 &
	PIDS+=($!)
	PID[$name]=$!
	URL[$name]=http://127.0.0.1:$port
	"$LOAD" wait -target "${URL[$name]}" -timeout 30s || { tail -20 "$TMP/$name.log" >&2; exit 1; }
}

# The header lines of a report: the machine, and what was measured.
machine_line() {
	echo "Machine: $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r)."
}
built_what() {
	echo "Wharf $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) (working tree as built), $(go version | awk '{print $3}')"
}
