#!/usr/bin/env bash
# Whole-image pulls from Wharf: `wharf pull` (batch endpoint + signed URLs)
# against `crane pull --format oci` (standard API), in the same run, on the
# same registry and image. Reports images/s and the requests each pull sent
# to the registry frontend (/v2/ routes, counted from Wharf's access log;
# signed-URL downloads are storage traffic and are counted apart).
#
# Settings (environment):
#   BENCH_LAYERS=15          layers in the image
#   BENCH_LAYER_SIZE=4194304 bytes per layer (incompressible)
#   BENCH_PULLS=5            pulls per tool (alternating wharf, crane)
#   BENCH_JOBS=4             wharf pull --jobs (crane's default is 4 too)
#   BENCH_OUT=path           markdown report (default bench/pull-results-latest.md)
#   WHARFDEV_CACHE              where crane is installed (default ~/.cache/wharf-ci)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
LAYERS=${BENCH_LAYERS:-15}
LAYER_SIZE=${BENCH_LAYER_SIZE:-4194304}
PULLS=${BENCH_PULLS:-5}
JOBS=${BENCH_JOBS:-4}
OUT=${BENCH_OUT:-$ROOT/bench/pull-results-latest.md}
CACHE=${WHARFDEV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf-ci}
CRANE_VERSION=v0.22.1
CRANE=$CACHE/crane-$CRANE_VERSION/crane

if [[ ! -x $CRANE ]]; then
	log "installing crane $CRANE_VERSION into $CACHE"
	(cd /tmp && GOBIN=$(dirname "$CRANE") GOFLAGS='' GOWORK=off \
		go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION")
fi

bench_tmp pull
build_tools
# Its access log (info, JSON) counts the frontend requests.
start_wharf access WHARF_LOG_FORMAT=json WHARF_LOG_LEVEL=info
REG=${URL[access]#http://}
ACCESS=$TMP/access.log

REF=$REG/bench/app:v1
log "pushing $LAYERS layers of $LAYER_SIZE bytes to $REF"
"$LOAD" setup -target "${URL[access]}" -repo bench/app -tag v1 -tags 1 -layers "$LAYERS" -layer-size "$LAYER_SIZE" 2>/dev/null

frontend() { grep -c '"route":"/v2/' "$ACCESS" || true; }
storage() { grep -c '"route":"/_wharf/blobs/' "$ACCESS" || true; }

declare -A secs reqs stor
own=0
secs[wharf]=0 secs[crane]=0 reqs[wharf]=0 reqs[crane]=0 stor[wharf]=0 stor[crane]=0
pull_once() { # TOOL DIR
	case $1 in
	wharf) "$WHARF" pull "$REF" -o "$2" --jobs "$JOBS" --json >"$TMP/last.json" ;;
	crane) "$CRANE" pull --insecure --format oci "$REF" "$2" >/dev/null 2>&1 ;;
	esac
}
for i in $(seq 1 "$PULLS"); do
	for tool in wharf crane; do
		dir=$TMP/out-$tool-$i
		f0=$(frontend) s0=$(storage)
		t0=$(date +%s.%N)
		pull_once "$tool" "$dir"
		t1=$(date +%s.%N)
		f1=$(frontend) s1=$(storage)
		secs[$tool]=$(awk -v a="${secs[$tool]}" -v b="$t0" -v c="$t1" 'BEGIN{printf "%.4f", a + c - b}')
		reqs[$tool]=$((reqs[$tool] + f1 - f0))
		stor[$tool]=$((stor[$tool] + s1 - s0))
		n=$(find "$dir/blobs" -type f | wc -l)
		[[ $n -ge $((LAYERS + 2)) ]] || { log "$tool pull $i: only $n blobs"; exit 1; }
		if [[ $tool == wharf ]]; then
			own=$(awk -v a="$own" -v b="$(grep -o '"seconds": *[0-9.e-]*' "$TMP/last.json" | grep -o '[0-9.e-]*$')" 'BEGIN{printf "%.4f", a + b}')
		fi
		rm -rf "$dir"
	done
done

rate() { awk -v n="$PULLS" -v s="$1" 'BEGIN{printf "%.2f", n / s}'; }
per() { awk -v n="$PULLS" -v r="$1" 'BEGIN{printf "%.1f", r / n}'; }
MIB=$(awk -v l="$LAYERS" -v s="$LAYER_SIZE" 'BEGIN{printf "%.0f", l * s / 1048576}')
{
	echo "# wharf pull vs crane pull ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "Image: $LAYERS layers x $LAYER_SIZE bytes (~$MIB MiB), Wharf embedded on 127.0.0.1, $PULLS pulls per tool, $(nproc) cores."
	echo
	echo "| tool | images/s | frontend requests / image | signed-URL downloads / image |"
	echo "|---|---|---|---|"
	echo "| wharf pull --jobs $JOBS | $(rate "${secs[wharf]}") | $(per "${reqs[wharf]}") | $(per "${stor[wharf]}") |"
	echo "| crane pull --format oci | $(rate "${secs[crane]}") | $(per "${reqs[crane]}") | $(per "${stor[crane]}") |"
	echo
	echo "wharf's own timing (--json \`seconds\`, without process start-up): $(rate "$own") images/s."
	echo "Process start-up is part of the table's figures for both tools."
	echo
	echo "Last wharf summary: \`$(tr -d '\n ' <"$TMP/last.json")\`"
} | tee "$OUT"
