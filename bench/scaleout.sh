#!/usr/bin/env bash
# The performance part of the scale-out issue, on this machine:
#   1. manifest GET by tag (plus tags/list, also cached, and push of 4 KiB
#      blobs, a write path no cache answers) at 16
#      clients: Wharf on PostgreSQL vs Wharf on embedded SQLite, same run,
#      alternating, median of BENCH_REPEAT runs; req/s, Wharf CPU per 1k
#      requests, and PostgreSQL's own CPU per 1k requests.
#   2. GC of a registry with 10,000 blobs of which 5,000 unreferenced
#      (load gc-populate: monolithic POST ?digest= at 16 concurrency,
#      then 500 manifests × 10 layers, tagged): one `wharf gc` pass against
#      the live server's database and blob directory; time, blobs removed
#      (counted in the database and the blob directory), and every tagged
#      manifest and its blobs still pulled (GET, content checked).
#   3. a mixed push/pull load (load gc-mixed: 4 pulls — manifest GET by tag +
#      one layer GET — to 1 push — a blob, half of them re-uploads of
#      orphans GC is deleting, + a tagged manifest) without GC, then with
#      `wharf gc` passes in a loop; p99 with GC vs without, and errors.
#      Afterwards every pushed manifest and its blobs must still pull.
# Parts 2 and 3 run on PostgreSQL, then (BENCH_SQLITE_GC=1, default) on SQLite.
#
# Settings (environment): BENCH_DURATION (8s), BENCH_REPEAT (3), BENCH_WARMUP (1s),
# BENCH_CLIENTS (16), BENCH_GC_BLOBS (10000), BENCH_GC_REFERENCED (5000),
# BENCH_GC_LAYERS (10), BENCH_GC_BLOB_SIZE (1024), BENCH_GC_ORPHANS (2000, per
# part-3 round), BENCH_GC_REVIEW_DELAY (5s, part 3; part 2 uses 1s),
# BENCH_SQLITE_GC (1), BENCH_PG_FSYNC (on), BENCH_KEEP=1 (keep the temp dir),
# BENCH_OUT (bench/results-scaleout.md).
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
GC_BLOBS=${BENCH_GC_BLOBS:-10000}
GC_REF=${BENCH_GC_REFERENCED:-5000}
GC_LAYERS=${BENCH_GC_LAYERS:-10}
GC_SIZE=${BENCH_GC_BLOB_SIZE:-1024}
GC_ORPHANS=${BENCH_GC_ORPHANS:-2000}
GC_DELAY3=${BENCH_GC_REVIEW_DELAY:-5s}
SQLITE_GC=${BENCH_SQLITE_GC:-1}
PG_FSYNC=${BENCH_PG_FSYNC:-on}
OUT=${BENCH_OUT:-$ROOT/bench/results-scaleout.md}
PGBIN=${WHARFDEV_PG_BIN:-/usr/lib/postgresql/15/bin}
secs() { local d=$1; d=${d%s}; echo "$d"; }

PGPID= PMPID= PGDIR= WPG= WSQ= GCLOOP=
# The wharfs restart between parts and PostgreSQL runs as another user:
# both are stopped here rather than through PIDS.
cleanup_hook() {
	for pid in $GCLOOP $WPG $WSQ; do kill "$pid" 2>/dev/null || true; done
	for pid in $GCLOOP $WPG $WSQ; do wait "$pid" 2>/dev/null || true; done
	if [[ -n $PGPID ]]; then
		# The postmaster itself (runuser forks and does not pass SIGINT on).
		local pm=$PMPID
		[[ -z $pm && -r $PGDIR/data/postmaster.pid ]] && pm=$(head -n 1 "$PGDIR/data/postmaster.pid")
		[[ -n $pm ]] && kill -INT "$pm" 2>/dev/null || true # fast shutdown
		for _ in $(seq 150); do kill -0 "$PGPID" 2>/dev/null || break; sleep 0.1; done
		[[ -n $pm ]] && kill -KILL "$pm" 2>/dev/null || true
		kill -KILL "$PGPID" 2>/dev/null || true
	fi
}
bench_tmp scaleout
build_tools
CLK=$(getconf CLK_TCK)

# ---- PostgreSQL: a throwaway cluster, as internal/pgtest does it ----
asuser=()
if [[ $(id -u) == 0 ]]; then
	pguser=postgres
	getent passwd postgres >/dev/null || pguser=wharf-test
	getent passwd "$pguser" >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin wharf-test
	asuser=(/usr/sbin/runuser -u "$pguser" --)
fi
PGDIR=$TMP/pg
mkdir -p "$PGDIR"
[[ -n ${asuser[*]} ]] && chown "${asuser[2]}" "$PGDIR"
PGPORT=$("$LOAD" freeport)
log "initdb + postgres on 127.0.0.1:$PGPORT (fsync=$PG_FSYNC)"
env -i PATH=/usr/bin:/bin LANG=C LC_ALL=C TZ=UTC "${asuser[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust \
	-E UTF8 --no-locale --no-instructions >"$TMP/initdb.log" 2>&1
env -i PATH=/usr/bin:/bin LANG=C LC_ALL=C TZ=UTC "${asuser[@]}" "$PGBIN/postgres" -D "$PGDIR/data" -k "$PGDIR" -p "$PGPORT" \
	-c listen_addresses=127.0.0.1 -c fsync="$PG_FSYNC" -c max_connections=200 -c shared_buffers=128MB \
	>"$PGDIR/server.log" 2>&1 &
PGPID=$!
for i in $(seq 100); do
	"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" && break
	kill -0 "$PGPID" 2>/dev/null || { tail -20 "$PGDIR/server.log" >&2; exit 1; }
	sleep 0.2
done
# runuser forks: $! is runuser, the postmaster is named in postmaster.pid.
PMPID=$(head -n 1 "$PGDIR/data/postmaster.pid")
"$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres wharf
DSN="postgres://postgres@127.0.0.1:$PGPORT/wharf?sslmode=disable"
PSQL=(psql -X -q -t -A -h 127.0.0.1 -p "$PGPORT" -U postgres wharf)
PGVER=$("${PSQL[@]}" -c 'SHOW server_version')

# CPU ticks of the whole PostgreSQL server: the postmaster (with its reaped
# children) plus its live children (backends, checkpointer, walwriter...).
pg_ticks() {
	local t=0 p
	t=$(awk '{sub(/.*\) /, ""); print $12+$13+$14+$15}' "/proc/$PMPID/stat")
	for p in $(pgrep -P "$PMPID"); do
		t=$((t + $(awk '{sub(/.*\) /, ""); print $12+$13}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

# ---- two Wharfs: PostgreSQL and SQLite ----
PGPORT_W=$("$LOAD" freeport)
SQPORT_W=$("$LOAD" freeport)
while [[ $SQPORT_W == "$PGPORT_W" ]]; do SQPORT_W=$("$LOAD" freeport); done
declare -A URL=([pg]=http://127.0.0.1:$PGPORT_W [sqlite]=http://127.0.0.1:$SQPORT_W)
declare -A DATA=([pg]=$TMP/wharf-pg [sqlite]=$TMP/wharf-sqlite)
declare -A PORT=([pg]=$PGPORT_W [sqlite]=$SQPORT_W)
# Environment of a wharf process (serve or gc) of a flavour.
wenv() {
	if [[ $1 == pg ]]; then
		echo WHARF_LOG_LEVEL=warn WHARF_METADATA_DRIVER=postgres "WHARF_METADATA_POSTGRES_DSN=$DSN"
	else
		echo WHARF_LOG_LEVEL=warn WHARF_METADATA_DRIVER=sqlite
	fi
}
declare -A PID
# start_wharfs: both servers on their data dirs (and $DSN), waited for.
start_wharfs() {
	# shellcheck disable=SC2046
	env $(wenv pg) "$WHARF" serve --addr "127.0.0.1:${PORT[pg]}" --data-dir "${DATA[pg]}" >>"$TMP/wharf-pg.log" 2>&1 &
	WPG=$!
	# shellcheck disable=SC2046
	env $(wenv sqlite) "$WHARF" serve --addr "127.0.0.1:${PORT[sqlite]}" --data-dir "${DATA[sqlite]}" >>"$TMP/wharf-sqlite.log" 2>&1 &
	WSQ=$!
	PID=([pg]=$WPG [sqlite]=$WSQ)
	for s in pg sqlite; do
		"$LOAD" wait -target "${URL[$s]}" -timeout 30s || { tail -20 "$TMP/wharf-$s.log" >&2; exit 1; }
	done
}
stop_wharfs() {
	kill "$WPG" "$WSQ" 2>/dev/null || true
	wait "$WPG" "$WSQ" 2>/dev/null || true
	WPG= WSQ=
}
start_wharfs
for s in pg sqlite; do
	"$LOAD" setup -target "${URL[$s]}" -layers 4 -layer-size 1M -tags 10 2>&1 | tail -n 1 >&2
done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RES=$TMP/part1.jsonl
# run1 FLAVOUR SCENARIO: one measured run, the JSON line gains db_cpu_ms.
run1() {
	local s=$1 sc=$2 t0 t1 line
	kill -0 "${PID[$s]}" 2>/dev/null || { log "wharf-$s (pid ${PID[$s]}) is not running"; exit 1; }
	t0=$(pg_ticks)
	local extra=()
	# push-small with 4 KiB blobs: a write path no cache answers, bound by the
	# metadata store rather than by bytes.
	[[ $sc == push-small ]] && extra=(-size 4K)
	line=$("$LOAD" "$sc" -target "${URL[$s]}" -pid "${PID[$s]}" -clk-tck "$CLK" -label "$s" -json \
		-duration "$DURATION" -warmup "$WARMUP" -clients "$CLIENTS" "${extra[@]}")
	t1=$(pg_ticks)
	jq -c --arg f "$s" --argjson ms "$(((t1 - t0) * 1000 / CLK))" '. + {flavour: $f, db_cpu_ms: $ms}' <<<"$line" >>"$RES"
}
for ((rep = 1; rep <= REPEAT; rep++)); do
	order=(sqlite pg)
	((rep % 2 == 0)) && order=(pg sqlite)
	for sc in manifest-get tags-list push-small; do
		for s in "${order[@]}"; do
			log "part 1, run $rep/$REPEAT: $sc on $s"
			run1 "$s" "$sc"
		done
	done
done

# ---- parts 2 and 3 ----
GCRES=$TMP/gc.jsonl
MIXRES=$TMP/mixed.jsonl
# gc_pass FLAVOUR DELAY LABEL [--dry-run] [LIMIT_SECONDS]: one `wharf gc`
# pass against the live server's database and blob directory, killed after
# LIMIT_SECONDS (600); a JSON line to $GCRES (rc 124: killed at the limit).
gc_pass() {
	local s=$1 delay=$2 label=$3 extra=${4:-} limit=${5:-600} t0 t1 p0 p1 out summary rc=0 u sy rss
	out=$TMP/gc-$s-$label.out
	p0=$(pg_ticks)
	t0=$(date +%s%N)
	# shellcheck disable=SC2046
	env $(wenv "$s") WHARF_GC_REVIEW_DELAY="$delay" /usr/bin/time -f '%U %S %M' -o "$out.time" \
		timeout "$limit" "$WHARF" gc --data-dir "${DATA[$s]}" $extra >"$out" 2>"$out.err" || rc=$?
	t1=$(date +%s%N)
	p1=$(pg_ticks)
	summary=$(tail -n 1 "$out")
	# (time prefixes "Command exited with non-zero status N" on failure)
	read -r u sy rss < <(tail -n 1 "$out.time") || true
	jq -nc --arg f "$s" --arg l "$label" --arg sum "$summary" --argjson rc "$rc" \
		--argjson wall "$(((t1 - t0) / 1000000))" --argjson cpu "$(awk -v u="${u:-0}" -v s="${sy:-0}" 'BEGIN{printf "%d", (u+s)*1000}')" \
		--argjson rss "${rss:-0}" --argjson db "$(((p1 - p0) * 1000 / CLK))" \
		--argjson blobs "$(grep -cE '^(deleted|would delete) blob ' "$out" || true)" \
		'{flavour:$f, label:$l, rc:$rc, wall_ms:$wall, gc_cpu_ms:$cpu, gc_rss_kib:$rss, db_cpu_ms:$db, blobs_deleted:$blobs, summary:$sum}' >>"$GCRES"
	if ((rc != 0)); then
		log "wharf gc ($s, $label) exited $rc:"
		tail -5 "$out.err" >&2
	fi
}
blob_rows() {
	if [[ $1 == pg ]]; then
		"${PSQL[@]}" -c "$2"
	else
		sqlite3 -readonly "${DATA[sqlite]}/wharf.db" "$2"
	fi
}
blob_files() { find "${DATA[$1]}/blobs/blobs" -type f | wc -l; }
Q_ALL='SELECT count(*) FROM blobs'
Q_UNREF='SELECT count(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = b.digest)'
COUNTS=$TMP/counts.jsonl
counts() { # FLAVOUR LABEL
	jq -nc --arg f "$1" --arg l "$2" --argjson all "$(blob_rows "$1" "$Q_ALL")" --argjson unref "$(blob_rows "$1" "$Q_UNREF")" \
		--argjson files "$(blob_files "$1")" '{flavour:$f, label:$l, blob_rows:$all, unreferenced_rows:$unref, blob_files:$files}' >>"$COUNTS"
	log "$1 $2: $(tail -n 1 "$COUNTS")"
}

# Parts 2 and 3 start from empty registries: part 1's pushes left
# thousands of unreferenced blobs behind.
stop_wharfs
"$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres wharf_gc
DSN="postgres://postgres@127.0.0.1:$PGPORT/wharf_gc?sslmode=disable"
PSQL=(psql -X -q -t -A -h 127.0.0.1 -p "$PGPORT" -U postgres wharf_gc)
DATA=([pg]=$TMP/wharf-pg-gc [sqlite]=$TMP/wharf-sqlite-gc)
start_wharfs
gc_flavours=(pg)
[[ $SQLITE_GC == 1 ]] && gc_flavours+=(sqlite)
VERIFY=$TMP/verify.jsonl
for s in "${gc_flavours[@]}"; do
	st=$TMP/state-$s.json
	log "part 2 ($s): populate $GC_BLOBS blobs, $GC_REF referenced by $((GC_REF / GC_LAYERS)) manifests"
	"$LOAD" gc-populate -target "${URL[$s]}" -state "$st" -blobs "$GC_BLOBS" -referenced "$GC_REF" \
		-layers "$GC_LAYERS" -size "$GC_SIZE" -clients "$CLIENTS" -seed 1 2>"$TMP/populate-$s.log"
	cat "$TMP/populate-$s.log" >&2
	sed "s/^/$s /" "$TMP/populate-$s.log" >>"$TMP/populate.log"
	counts "$s" before-gc
	sleep 2 # review delay 1s: every orphan is eligible
	gc_pass "$s" 1s dry-run --dry-run
	gc_pass "$s" 1s part2
	counts "$s" after-gc
	"$LOAD" gc-verify -target "${URL[$s]}" -state "$st" -orphans-gone -clients "$CLIENTS" | jq -c --arg f "$s" --arg l part2 '. + {flavour:$f, label:$l}' >>"$VERIFY" ||
		log "verify ($s, part 2) FAILED"
	gc_pass "$s" 1s second-pass

	log "part 3 ($s): mixed load, $REPEAT rounds without / with GC"
	pushed=$TMP/pushed-$s.jsonl
	: >"$pushed"
	for ((rep = 1; rep <= REPEAT; rep++)); do
		for phase in nogc gc; do
			"$LOAD" gc-orphans -target "${URL[$s]}" -state "$st" -blobs "$GC_ORPHANS" -clients "$CLIENTS" -seed $((rep * 10 + ${#phase})) 2>&1 | tail -n 1 >&2
			sleep "$(($(secs "$GC_DELAY3") + 1))"
			stop=$TMP/stop-gc
			rm -f "$stop"
			if [[ $phase == gc ]]; then
				(
					# Passes back to back while the load runs; a pass still
					# running 30 s after the load ended is killed (and reported).
					end=$(($(date +%s) + $(secs "$DURATION")))
					for i in $(seq 50); do
						[[ -e $stop || $(date +%s) -ge $end ]] && break
						gc_pass "$s" "$GC_DELAY3" "loop-$rep-$i" "" $((end + 30 - $(date +%s)))
					done
				) &
				GCLOOP=$!
			fi
			log "part 3 ($s) round $rep: $phase"
			"$LOAD" gc-mixed -target "${URL[$s]}" -state "$st" -clients "$CLIENTS" -duration "$DURATION" -push-every 5 \
				-pushed "$pushed" -label "$phase" -json | jq -c --arg f "$s" --argjson r "$rep" '. + {flavour:$f, round:$r}' >>"$MIXRES"
			if [[ -n $GCLOOP ]]; then
				touch "$stop"
				wait "$GCLOOP" || true
				GCLOOP=
			fi
		done
	done
	# One more pass, then everything the mixed load pushed must still pull
	# (orphans it re-uploaded while GC deleted them included).
	gc_pass "$s" "$GC_DELAY3" final "" 120
	"$LOAD" gc-verify -target "${URL[$s]}" -state "$st" -pushed "$pushed" -clients "$CLIENTS" | jq -c --arg f "$s" --arg l part3 '. + {flavour:$f, label:$l}' >>"$VERIFY" ||
		log "verify ($s, part 3) FAILED"
	counts "$s" end
	grep -c . "$pushed" | xargs -I{} echo "{} manifests pushed by the mixed load ($s)" >&2
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ----
{
	echo "## Scale-out: PostgreSQL vs SQLite, GC under load — $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	machine_line
	echo "$(built_what); PostgreSQL $PGVER (local cluster on 127.0.0.1, fsync=$PG_FSYNC, shared_buffers=128MB; Wharf's pool 16)."
	echo "Each throughput run ${DURATION} after a ${WARMUP} warm-up, ${CLIENTS} clients, ${REPEAT} runs per flavour alternating (median shown)."
	echo "Load average (1/5/15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER."
	echo
	python3 "$ROOT/bench/scaleout_report.py" "$RES" "$GCRES" "$COUNTS" "$VERIFY" "$MIXRES" "$GC_BLOBS" "$GC_REF" "$GC_LAYERS" "$GC_SIZE" "$GC_ORPHANS" "$GC_DELAY3" "$TMP/populate.log"
} >"$OUT"
cat "$OUT"
log "written to $OUT"
