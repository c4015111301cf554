#!/usr/bin/env bash
# Run the OCI distribution-spec conformance suite against wharf.
#
# Usage:
#   scripts/conformance.sh                 build the suite + wharf, start wharf, run, check
#   scripts/conformance.sh --build-only    only build (and cache) the conformance binary
#   scripts/conformance.sh --url URL       test an already running registry, e.g.
#                                          http://127.0.0.1:5000 (same as CONFORMANCE_URL)
#
# Environment:
#   CONFORMANCE_URL               registry to test instead of starting wharf (http:// or https://)
#   CONFORMANCE_EXTRA_SERVE_ARGS  extra arguments appended to `wharf serve ...` (word-split)
#   CONFORMANCE_TIMEOUT           seconds the suite may run (default 900)
#   CONFORMANCE_START_TIMEOUT     seconds to wait for GET /v2/ to answer 200 (or 401: auth on) (default 30)
#   CONFORMANCE_ALLOW_SKIPS=1     do not fail on skipped tests (failures still fail)
#   CONFORMANCE_EXPECTED_SKIPS    "a|b": skipped leaf tests whose junit name ends in one of
#                                 these (e.g. "blobs/mount/blob-mount") do not fail the run
#   CONFORMANCE_VERBOSE=1         print the suite's whole output (always saved to artifacts)
#   OCI_*                         any setting of the suite (see docs/conformance-notes.md);
#                                 values set by the caller override the defaults below
#   WHARFDEV_CACHE                   cache dir (default ~/.cache/wharf-ci)
#   WHARFDEV_ARTIFACTS               results are copied to $WHARFDEV_ARTIFACTS/conformance
#                                 (default /tmp/wharf-artifacts)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build_only=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--build-only) build_only=1 ;;
	--url) CONFORMANCE_URL=${2:?--url needs a value}; shift ;;
	--url=*) CONFORMANCE_URL=${1#--url=} ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
	shift
done

CONFORMANCE_BIN="$WHARFDEV_CACHE/bin/oci-conformance-$CONFORMANCE_VERSION"

# build_conformance: fetch the suite from the Go module proxy and build it once.
build_conformance() {
	if [[ -x $CONFORMANCE_BIN ]]; then
		info "conformance suite: cached $CONFORMANCE_BIN"
		return 0
	fi
	log "building conformance suite $CONFORMANCE_MODULE@$CONFORMANCE_VERSION"
	local tmp json dir
	tmp=$(mktemp -d)
	# Outside any module, so nothing touches the repo's go.mod/go.sum.
	json=$(cd "$tmp" && GOFLAGS=-mod=mod GOWORK=off timeout --foreground 600 \
		go mod download -json "$CONFORMANCE_MODULE@$CONFORMANCE_VERSION") || {
		printf '%s\n' "${json:-}" >&2
		rm -rf "$tmp"
		die "go mod download of the conformance suite failed"
	}
	dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[[ -n $dir && -d $dir ]] || { printf '%s\n' "$json" >&2; rm -rf "$tmp"; die "no module dir in go mod download output"; }
	# The rewritten suite is a main package: `go build` is its supported entry point.
	# (`go test -c` also works but runs it in a deprecated "legacy" mode.)
	if ! (cd "$dir" && GOFLAGS=-mod=readonly GOWORK=off CGO_ENABLED=0 timeout --foreground 600 \
		go build -trimpath -ldflags "-X main.Version=$CONFORMANCE_VERSION" -o "$tmp/conformance" .); then
		rm -rf "$tmp"
		die "building the conformance suite failed"
	fi
	atomic_install "$tmp/conformance" "$CONFORMANCE_BIN"
	rm -rf "$tmp"
	info "conformance suite: built $CONFORMANCE_BIN"
}

# parse_junit FILE: sets
#   S_TOTAL S_PASSED S_FAILED S_SKIPPED  from the <testsuite> attributes: the suite's own
#       counts of every check (one leaf test can hold several checks, e.g. "delete" and
#       "delete is atomic"; its status is the worst of them EXCEPT that a pass hides a skip,
#       so these counts are the ones that reveal every skip);
#   J_TOTAL J_PASSED J_FAILED J_SKIPPED  from the <testcase status="..."> of each leaf test
#       (status is passed|skipped|failure|error; disabled tests are written as skipped).
# Attribute values are XML-escaped, so grepping start tags is exact.
parse_junit() {
	local f=$1 suite
	_tc_count() { { grep -oE "<testcase [^>]*status=\"($1)\"" "$f" || true; } | wc -l | tr -d ' '; }
	_attr() { local v; v=$(printf '%s' "$suite" | sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p"); printf '%s' "${v:-0}"; }
	J_TOTAL=$({ grep -o '<testcase ' "$f" || true; } | wc -l | tr -d ' ')
	J_PASSED=$(_tc_count passed)
	J_FAILED=$(_tc_count 'failure|error')
	J_SKIPPED=$(_tc_count skipped)
	suite=$(grep -m1 -o '<testsuite [^>]*>' "$f" || true)
	S_TOTAL=$(_attr tests)
	S_FAILED=$(($(_attr failures) + $(_attr errors)))
	S_SKIPPED=$(($(_attr skipped) + $(_attr disabled)))
	S_PASSED=$((S_TOTAL - S_FAILED - S_SKIPPED))
}

# parse_stdout_counts LOG: sets S_* from the count table the suite prints on stdout
# ("  Pass.....:  N"). Used only for filtered runs, where this version of the suite
# fails to write its reports (see docs/conformance-notes.md).
parse_stdout_counts() {
	_n() { local v; v=$(sed -n "s/^  $1\.*: *\([0-9][0-9]*\)$/\1/p" "$2" | awk 'NR<=1'); printf '%s' "${v:-0}"; }
	S_PASSED=$(_n Pass "$1")
	S_FAILED=$(($(_n FAIL "$1") + $(_n Error "$1")))
	S_SKIPPED=$(($(_n Skip "$1") + $(_n Disabled "$1")))
	S_TOTAL=$(_n Total "$1")
}

# junit_names FILE STATUS: names of the test cases with that status.
junit_names() {
	{ grep -oE "<testcase name=\"[^\"]*\"[^>]*status=\"($2)\"" "$1" || true; } |
		sed 's/^<testcase name="\([^"]*\)".*/\1/; s/&#34;/"/g; s/&amp;/\&/g; s/&lt;/</g; s/&gt;/>/g'
}

need_cmd timeout coreutils
require_go
build_conformance
if [[ $build_only -eq 1 ]]; then
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/wharf-conformance.XXXXXX")
server_pid=''
cleanup() {
	local rc=$?
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	if [[ ${WHARFDEV_KEEP_TMP:-0} == 1 ]]; then
		info "kept $work"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

artifacts="$WHARFDEV_ARTIFACTS/conformance"
mkdir -p "$artifacts"
rm -f "$artifacts"/{junit.xml,report.html,results.yaml,conformance.log,wharf.log}

save_server_log() {
	if [[ -f $work/wharf.log ]]; then
		cp -f "$work/wharf.log" "$artifacts/wharf.log" 2>/dev/null || true
	fi
}
show_server_log() {
	[[ -f $work/wharf.log ]] || return 0
	err "last 60 lines of the wharf server log ($artifacts/wharf.log):"
	tail -n 60 "$work/wharf.log" >&2 || true
	save_server_log
}

# ---- the registry under test ---------------------------------------------
if [[ -n ${CONFORMANCE_URL:-} ]]; then
	url=${CONFORMANCE_URL%/}
	case $url in
	http://*) registry=${url#http://}; tls=disabled ;;
	https://*) registry=${url#https://}; tls=${OCI_TLS:-enabled} ;;
	*) die "CONFORMANCE_URL must start with http:// or https://: $url" ;;
	esac
	log "testing the registry already running at $url"
else
	log "building wharf"
	(cd "$REPO_ROOT" && timeout --foreground 600 go build -o "$work/wharf" ./cmd/wharf) || die "go build ./cmd/wharf failed"
	read -r -a extra_args <<<"${CONFORMANCE_EXTRA_SERVE_ARGS:-}"
	start_timeout=${CONFORMANCE_START_TIMEOUT:-30}
	started=0
	for attempt in 1 2 3; do
		port=$(free_port) || die "could not find a free port on 127.0.0.1"
		rm -rf "$work/data"
		mkdir -p "$work/data"
		cmd=("$work/wharf" serve --addr "127.0.0.1:$port" --data-dir "$work/data" "${extra_args[@]}")
		log "starting: ${cmd[*]}"
		"${cmd[@]}" >"$work/wharf.log" 2>&1 </dev/null &
		server_pid=$!
		deadline=$((SECONDS + start_timeout))
		status=000
		while ((SECONDS < deadline)); do
			if ! kill -0 "$server_pid" 2>/dev/null; then
				break
			fi
			status=$(http_status 127.0.0.1 "$port" /v2/)
			[[ $status == 200 || $status == 401 ]] && break # 401: up, with auth on
			sleep 0.2
		done
		if [[ $status == 200 || $status == 401 ]]; then
			started=1
			break
		fi
		if ! kill -0 "$server_pid" 2>/dev/null; then
			wait "$server_pid" 2>/dev/null && rc=0 || rc=$?
			server_pid=''
			if grep -qi 'address already in use' "$work/wharf.log" && [[ $attempt -lt 3 ]]; then
				warn "port $port was taken, retrying with another port"
				continue
			fi
			show_server_log
			die "wharf serve exited (status $rc) before answering GET /v2/"
		fi
		show_server_log
		die "wharf did not answer 200 on GET http://127.0.0.1:$port/v2/ within ${start_timeout}s (last status: $status)"
	done
	[[ $started -eq 1 ]] || die "could not start wharf"
	info "wharf is up on 127.0.0.1:$port (pid $server_pid)"
	registry="127.0.0.1:$port"
	tls=disabled
fi

# ---- suite configuration ---------------------------------------------------
# The rewritten suite reads OCI_* variables (and ./oci-conformance.yaml, which we
# never create: it runs in an empty directory). Legacy names (OCI_ROOT_URL,
# OCI_NAMESPACE, OCI_TEST_PUSH, ...) still work but print deprecation warnings,
# and OCI_TLS=false would mean https. See docs/conformance-notes.md.
mkdir -p "$work/run"
export OCI_REGISTRY="$registry"
export OCI_TLS="$tls"
export OCI_VERSION="${OCI_VERSION:-1.1}"
export OCI_REPO1="${OCI_REPO1:-conformance/repo1}"
export OCI_REPO2="${OCI_REPO2:-conformance/repo2}"
export OCI_RESULTS_DIR="$work/run/results"
export OCI_LOG="${OCI_LOG:-warn}"
# every API group on (these are the 1.1 defaults, made explicit) ...
export OCI_API_PING="${OCI_API_PING:-true}"
export OCI_API_PULL="${OCI_API_PULL:-true}"
export OCI_API_PUSH="${OCI_API_PUSH:-true}"
export OCI_API_TAGS_LIST="${OCI_API_TAGS_LIST:-true}"
export OCI_API_TAGS_DELETE="${OCI_API_TAGS_DELETE:-true}"
export OCI_API_TAGS_ATOMIC="${OCI_API_TAGS_ATOMIC:-true}"
export OCI_API_MANIFESTS_DELETE="${OCI_API_MANIFESTS_DELETE:-true}"
export OCI_API_MANIFESTS_ATOMIC="${OCI_API_MANIFESTS_ATOMIC:-true}"
export OCI_API_BLOBS_DELETE="${OCI_API_BLOBS_DELETE:-true}"
export OCI_API_BLOBS_ATOMIC="${OCI_API_BLOBS_ATOMIC:-true}"
export OCI_API_BLOBS_MOUNT_ANONYMOUS="${OCI_API_BLOBS_MOUNT_ANONYMOUS:-true}"
export OCI_API_REFERRER="${OCI_API_REFERRER:-true}"
# ... plus the one that 1.1 leaves off: without it "post cancel" is reported as skipped.
export OCI_API_BLOBS_UPLOAD_CANCEL="${OCI_API_BLOBS_UPLOAD_CANCEL:-true}"
# every data set the 1.1 defaults include (sparse stays off: it needs a registry
# that accepts manifests whose blobs were never pushed)
for d in IMAGE INDEX INDEX_LIST ARTIFACT SUBJECT SUBJECT_MISSING ARTIFACT_LIST SUBJECT_LIST \
	DATA_FIELD NONDISTRIBUTABLE CUSTOM_FIELDS NO_LAYERS EMPTY_BLOB SHA512; do
	v="OCI_DATA_$d"
	export "$v=${!v:-true}"
done
if [[ -n ${CONFORMANCE_FILTER:-} ]]; then
	export OCI_FILTER_TEST="$CONFORMANCE_FILTER"
fi
unset OCI_CONFIGURATION || true

log "running the OCI conformance suite against $OCI_TLS/$OCI_REGISTRY (version $OCI_VERSION, timeout ${CONFORMANCE_TIMEOUT:-900}s)"
suite_rc=0
(cd "$work/run" && timeout --foreground --kill-after=30 "${CONFORMANCE_TIMEOUT:-900}" "$CONFORMANCE_BIN" </dev/null) \
	>"$work/conformance.log" 2>&1 || suite_rc=$?
cp -f "$work/conformance.log" "$artifacts/conformance.log"
for f in junit.xml report.html results.yaml; do
	if [[ -f $work/run/results/$f ]]; then cp -f "$work/run/results/$f" "$artifacts/$f"; fi
done
save_server_log

if [[ ${CONFORMANCE_VERBOSE:-0} == 1 ]]; then
	cat "$work/conformance.log"
else
	# The suite's report: overall counts and the per-API / per-data-set status tables.
	sed -n '/^OCI Conformance Result:/,$p' "$work/conformance.log" | awk 'NR<=150' || true
	# What it printed on stderr: config errors, deprecation and failed-test warnings (bounded).
	grep -E '^(WARNING|failed|time=|\*\*\*)' "$work/conformance.log" | awk 'NR<=40' || true
fi
info "full output: $artifacts/conformance.log; report: $artifacts/report.html"

# ---- verdict -----------------------------------------------------------------
problems=()
if [[ $suite_rc -eq 124 || $suite_rc -eq 137 ]]; then
	problems+=("the suite timed out after ${CONFORMANCE_TIMEOUT:-900}s")
fi
junit="$work/run/results/junit.xml"
S_TOTAL=0 S_PASSED=0 S_FAILED=0 S_SKIPPED=0
if [[ ! -s $junit && -n ${CONFORMANCE_FILTER:-} ]] && grep -q '^OCI Conformance Result:' "$work/conformance.log"; then
	# A filtered run leaves some data sets in status "Unknown", and the suite then
	# aborts while writing results.yaml, before junit.xml: use its printed counts.
	warn "filtered run: the suite wrote no junit.xml; using the counts it printed"
	parse_stdout_counts "$work/conformance.log"
	if [[ $S_TOTAL -eq 0 ]]; then
		problems+=("the filter matched no test")
	fi
	if [[ $S_FAILED -gt 0 ]]; then
		problems+=("$S_FAILED check(s) failed")
	fi
	if [[ $S_SKIPPED -gt 0 && ${CONFORMANCE_ALLOW_SKIPS:-0} != 1 ]]; then
		problems+=("$S_SKIPPED check(s) skipped")
	fi
elif [[ ! -s $junit ]]; then
	problems+=("no results/junit.xml was written (the suite exits 0 when its configuration fails to load)")
else
	parse_junit "$junit"
	info "junit: $J_TOTAL test cases: $J_PASSED passed, $J_FAILED failed, $J_SKIPPED skipped"
	if [[ $J_TOTAL -eq 0 || $S_TOTAL -eq 0 ]]; then
		problems+=("junit.xml holds no test cases")
	fi
	if [[ $((J_PASSED + J_FAILED + J_SKIPPED)) -ne $J_TOTAL ]]; then
		problems+=("junit.xml has test cases with an unknown status")
	fi
	if [[ $S_FAILED -gt 0 || $J_FAILED -gt 0 ]]; then
		problems+=("$S_FAILED check(s) failed in $J_FAILED test case(s)")
		echo "Failed test cases, in run order (details in $artifacts/report.html):"
		junit_names "$junit" 'failure|error' | awk '!seen[$0]++' | awk 'NR<=60' | sed 's/^/    /'
	fi
	if [[ $S_SKIPPED -gt 0 || $J_SKIPPED -gt 0 ]]; then
		# Skipped leaf tests whose name ends in none of the expected ones
		# (CONFORMANCE_EXPECTED_SKIPS, "|"-separated, e.g. "blobs/mount/blob-mount").
		unexpected=''
		while IFS= read -r name; do
			[[ -n $name ]] || continue
			ok=0
			IFS='|' read -ra expected <<<"${CONFORMANCE_EXPECTED_SKIPS:-}"
			for e in "${expected[@]}"; do
				[[ -n $e && $name == *"$e" ]] && ok=1
			done
			[[ $ok -eq 1 ]] || unexpected+="$name; "
		done < <(junit_names "$junit" skipped)
		if [[ ${CONFORMANCE_ALLOW_SKIPS:-0} == 1 ]]; then
			warn "$S_SKIPPED check(s) skipped (allowed by CONFORMANCE_ALLOW_SKIPS=1)"
		elif [[ -n ${CONFORMANCE_EXPECTED_SKIPS:-} && $J_SKIPPED -gt 0 && -z $unexpected ]]; then
			warn "$S_SKIPPED check(s) skipped, every one expected by this run: ${CONFORMANCE_EXPECTED_SKIPS}"
		else
			problems+=("$S_SKIPPED check(s) skipped: a skip means a feature was disabled or answered as unsupported")
		fi
		echo "Test cases with skips (a skip inside a passing test case is listed in report.html / results.yaml):"
		junit_names "$junit" skipped | awk '!seen[$0]++' | awk 'NR<=60' | sed 's/^/    /'
		echo "APIs / data sets with skips (Tag Param and Sparse are off on purpose and run no tests):"
		grep -E ': +(Skip|Disabled)$' "$work/conformance.log" |
			grep -v -e 'Manifest put with tag params' -e 'Tag Param' -e 'Sparse Manifests' |
			sed 's/^ */    /' | awk 'NR<=60' || true
	fi
	if [[ $suite_rc -ne 0 && ${#problems[@]} -eq 0 ]]; then
		problems+=("the suite exited with status $suite_rc")
	fi
fi

# One plain closing line with the suite's own counts.
printf '\nconformance: %s passed, %s failed, %s skipped\n' "$S_PASSED" "$S_FAILED" "$S_SKIPPED"
if [[ ${#problems[@]} -gt 0 ]]; then
	for p in "${problems[@]}"; do err "conformance: $p"; done
	if [[ -z ${CONFORMANCE_URL:-} ]]; then show_server_log; fi
	exit 1
fi
log "conformance: OK"
