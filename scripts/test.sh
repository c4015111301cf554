#!/usr/bin/env bash
# Run all of wharf's checks and tests: the one command to run before pushing,
# and what CI runs (.ci/run).
#
#   scripts/test.sh
#
# Steps: setup (tools, cached outside the repo) -> go build -> gofmt -l -> go vet
# -> staticcheck -> go test -race -> OCI conformance suite (scripts/conformance.sh).
# Every step runs even when an earlier one failed (conformance needs the build);
# the exit status is non-zero when any step failed.
#
# Needs: Go 1.26+, gcc (for -race), network access to the Go module proxy
# (and Debian apt, used only when a tool is missing).
#
# Environment:
#   CI                      when set, WHARFDEV_REQUIRE_SERVERS=1 is exported: tests that
#                           would skip for lack of a server (PostgreSQL, S3, ...) fail
#   WHARFDEV_CACHE             tool/binary cache (default ~/.cache/wharf-ci)
#   WHARFDEV_ARTIFACTS         logs and reports (default /tmp/wharf-artifacts)
#   WHARFDEV_SKIP_CONFORMANCE=1  skip the conformance step (ignored when CI is set)
#   WHARFDEV_TEST_BUDGET       seconds for the whole run (default 5100: CI stops at 90 min);
#                           each step is cut off when the budget runs out, so the
#                           summary is always printed
#   GO_TEST_TIMEOUT         go test -timeout (default 30m)
#   GO_TEST_FLAGS           extra flags for go test (word-split), e.g. "-run TestFoo"
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

if [[ -n ${CI:-} ]]; then
	export WHARFDEV_REQUIRE_SERVERS=1
fi
mkdir -p "$WHARFDEV_ARTIFACTS"
LOGS="$WHARFDEV_ARTIFACTS/logs"
mkdir -p "$LOGS"

# Each step runs as its own `bash scripts/test.sh --step NAME` process, so `set -e`
# holds inside it, and a failing step cannot stop the ones after it.
step_names=()
step_results=()
step_times=()
# run_step NAME FUNC : run a step, record its result and duration; never exits.
BUDGET=${WHARFDEV_TEST_BUDGET:-5100}
step_pid=''
stop_step() {
	if [[ -n $step_pid ]]; then
		kill -TERM -- "-$step_pid" 2>/dev/null || kill -TERM "$step_pid" 2>/dev/null || true
		wait "$step_pid" 2>/dev/null || true
	fi
}
run_step() {
	local name=$1 fn=$2 start=$SECONDS rc=0 left
	left=$((BUDGET - SECONDS))
	if [[ $left -le 10 ]]; then
		not_run "$name" fail "time budget of ${BUDGET}s used up"
		err "step '$name' not run: time budget used up"
		return 0
	fi
	printf '\n%s======== %s ========%s\n' "$_c_bold" "$name" "$_c_off"
	# This timeout runs the step in its own process group and, when the budget runs
	# out, stops the whole group; on Ctrl-C / TERM the trap below does the same.
	# Timeouts inside the steps use --foreground so they stay in that group.
	timeout --kill-after=30 "$left" bash "$REPO_ROOT/scripts/test.sh" --step "$fn" </dev/null &
	step_pid=$!
	wait "$step_pid" || rc=$?
	step_pid=''
	if [[ $rc -eq 124 || $rc -eq 137 ]] && ((SECONDS - start >= left - 1)); then
		err "step '$name' was stopped: time budget of ${BUDGET}s used up"
	fi
	step_names+=("$name")
	step_times+=("$((SECONDS - start))s")
	if [[ $rc -eq 0 ]]; then
		step_results+=(PASS)
	else
		step_results+=("FAIL|exit status $rc")
		err "step '$name' failed (exit status $rc)"
	fi
}
# not_run NAME FAILED? REASON
not_run() {
	step_names+=("$1")
	if [[ $2 == fail ]]; then step_results+=("FAIL|not run: $3"); else step_results+=("SKIP|not run: $3"); fi
	step_times+=("-")
}

gover=$(go env GOVERSION 2>/dev/null || echo unknown)
# keyed by staticcheck version and by the Go that built it: staticcheck cannot
# analyse code for a newer Go than the one it was built with.
STATICCHECK_BIN="$WHARFDEV_CACHE/bin/staticcheck-$STATICCHECK_VERSION-$gover"

# ---- steps --------------------------------------------------------------------
step_setup() {
	need_cmd timeout coreutils
	require_go
	info "$(go version)"
	# go test -race needs cgo and a C compiler.
	need_cmd gcc gcc
	info "cache: $WHARFDEV_CACHE"
	install_staticcheck
	install_client_test_packages
	install_minio
	install_seaweedfs
	install_postgres
	install_haproxy
	# fetch and build the conformance suite now, so a failure shows up as a setup problem
	timeout --foreground 900 bash "$REPO_ROOT/scripts/conformance.sh" --build-only
}

# The client tests need CNCF Distribution 2.8 (a registry without the batch
# endpoint: the fallback path), skopeo (a real reader of `wharf export`'s
# tarballs) and containerd (ctr pulls through the pull-through cache; the
# test runs its own daemon). Debian packages, installed only when missing;
# without them those tests skip (and fail when WHARFDEV_REQUIRE_SERVERS=1,
# as in CI).
install_client_test_packages() {
	local missing=() added_policy=''
	[[ -x /usr/bin/docker-registry ]] || missing+=(docker-registry)
	command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
	command -v containerd >/dev/null 2>&1 || missing+=(containerd)
	if [[ ${#missing[@]} -eq 0 ]]; then
		info "docker-registry, skopeo, containerd: installed"
		return 0
	fi
	log "installing ${missing[*]} with apt-get"
	# policy-rc.d exit 101 keeps the packages' services from starting
	if [[ ! -e /usr/sbin/policy-rc.d && -w /usr/sbin ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added_policy=1
	fi
	apt_install "${missing[@]}" >/dev/null || warn "could not install ${missing[*]}: the tests that need them will skip (or fail under CI)"
	[[ -z $added_policy ]] || rm -f /usr/sbin/policy-rc.d
}

install_staticcheck() {
	if [[ -x $STATICCHECK_BIN ]]; then
		info "staticcheck: cached $STATICCHECK_BIN"
		return 0
	fi
	log "installing staticcheck $STATICCHECK_VERSION"
	local tmp
	tmp=$(mktemp -d)
	if ! (cd "$tmp" && GOBIN="$tmp/bin" GOFLAGS='' GOWORK=off timeout --foreground 900 \
		go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"); then
		rm -rf "$tmp"
		err "go install honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION failed"
		return 1
	fi
	atomic_install "$tmp/bin/staticcheck" "$STATICCHECK_BIN"
	rm -rf "$tmp"
	info "staticcheck: installed $STATICCHECK_BIN"
}

step_build() {
	timeout --foreground 900 go build ./...
}

step_gofmt() {
	local files=() out
	while IFS= read -r -d '' f; do
		files+=("$f")
	done < <(find . \( -path ./.git -o -path ./vendor -o -name testdata -o -name node_modules \) -prune \
		-o -type f -name '*.go' -print0)
	if [[ ${#files[@]} -eq 0 ]]; then
		info "no Go files"
		return 0
	fi
	out=$(gofmt -l "${files[@]}")
	if [[ -n $out ]]; then
		err "these files are not gofmt-formatted (run: gofmt -w <file>):"
		# shellcheck disable=SC2001
		sed 's/^/    /' <<<"$out" >&2
		return 1
	fi
	info "${#files[@]} Go files formatted"
}

step_vet() {
	timeout --foreground 900 go vet ./...
}

step_staticcheck() {
	[[ -x $STATICCHECK_BIN ]] || install_staticcheck
	local out rc=0
	out=$(timeout --foreground 1200 "$STATICCHECK_BIN" ./... 2>&1) || rc=$?
	[[ -z $out ]] || printf '%s\n' "$out"
	# staticcheck exits 0 when package loading finds nothing (e.g. go.mod needs tidying)
	if [[ $rc -eq 0 && $out == *'matched no packages'* ]] &&
		[[ -n $(find . -path ./.git -prune -o -name '*.go' -print -quit) ]]; then
		err "staticcheck checked no packages"
		return 1
	fi
	return "$rc"
}

GO_TEST_LOG="$LOGS/go-test.log"
step_gotest() {
	local rc=0 extra=() statuses
	read -r -a extra <<<"${GO_TEST_FLAGS:-}"
	info "WHARFDEV_REQUIRE_SERVERS=${WHARFDEV_REQUIRE_SERVERS:-<unset>}; full log: $GO_TEST_LOG"
	# the MinIO that install_minio built (internal/miniotest), whatever MINIO_VERSION says
	if [[ -z ${WHARFDEV_MINIO_BIN:-} && -x $WHARFDEV_CACHE/bin/minio-$MINIO_VERSION ]]; then
		export WHARFDEV_MINIO_BIN="$WHARFDEV_CACHE/bin/minio-$MINIO_VERSION"
	fi
	if [[ -z ${WHARFDEV_SEAWEEDFS_BIN:-} && -x $WHARFDEV_CACHE/bin/weed-$SEAWEEDFS_VERSION ]]; then
		export WHARFDEV_SEAWEEDFS_BIN="$WHARFDEV_CACHE/bin/weed-$SEAWEEDFS_VERSION"
	fi
	# -v so every test is counted; the live output hides the RUN/PASS/SKIP bookkeeping lines.
	set +e
	CGO_ENABLED=1 timeout --foreground --kill-after=60 2100 \
		go test -race -count=1 -v -timeout "${GO_TEST_TIMEOUT:-30m}" "${extra[@]}" ./... 2>&1 |
		tee "$GO_TEST_LOG" |
		grep --line-buffered -v -E '^[[:space:]]*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|SKIP):)|^PASS$'
	statuses=("${PIPESTATUS[@]}")
	set -e
	rc=${statuses[0]} # go test's status; grep's is 1 when it printed nothing
	if [[ $rc -eq 124 || $rc -eq 137 ]]; then
		err "go test timed out"
	fi
	if grep -qE '^[[:space:]]*--- SKIP:' "$GO_TEST_LOG"; then
		echo "skipped tests (with the reason line that follows):"
		grep -E -A1 '^[[:space:]]*--- SKIP:' "$GO_TEST_LOG" | grep -v '^--$' | awk 'NR<=40' | sed 's/^/    /' || true
	fi
	return "$rc"
}

# A short run of every fuzzer (the seeds in testdata/fuzz already ran as
# ordinary tests). WHARFDEV_FUZZTIME=0 turns it off outside CI.
step_fuzz() {
	local pkg fn rc=0
	while read -r pkg fn; do
		echo "fuzz $pkg $fn (${WHARFDEV_FUZZTIME:-8s})"
		local try ok=0
		for try in 1 2; do
			if timeout --foreground 300 go test -run '^$' -fuzz "^${fn}\$" -fuzztime "${WHARFDEV_FUZZTIME:-8s}" "$pkg" >"$LOGS/fuzz-$fn.log" 2>&1; then
				ok=1
				break
			fi
			# On a loaded machine Go's fuzz coordinator can miss its own
			# deadline while stopping workers ("context deadline exceeded")
			# without finding anything; that is retried once. A real finding
			# says "Failing input written to".
			if grep -q 'Failing input written to' "$LOGS/fuzz-$fn.log" || ! grep -q 'context deadline exceeded' "$LOGS/fuzz-$fn.log"; then
				break
			fi
			echo "  $fn: the fuzz engine timed out stopping (no finding); retrying"
		done
		if [[ $ok -ne 1 ]]; then
			rc=1
			echo "  $fn FAILED: a new crasher is in $pkg/testdata/fuzz/$fn; keep it as a seed once fixed"
			tail -n 20 "$LOGS/fuzz-$fn.log" | sed 's/^/    /'
		fi
	done < <(grep -rhoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . | sort -u | sed 's/^func //' | while read -r fn; do
		f=$(grep -rlE --include='*_test.go' "^func $fn\b" . | head -n 1)
		echo "./$(dirname "${f#./}") $fn"
	done)
	return "$rc"
}

CONFORMANCE_LOG="$LOGS/conformance.log"
CONFORMANCE_REDIRECT_LOG="$LOGS/conformance-redirect.log"
CONFORMANCE_S3_LOG="$LOGS/conformance-s3.log"
CONFORMANCE_SEAWEEDFS_LOG="$LOGS/conformance-seaweedfs.log"
CONFORMANCE_AUTH_LOG="$LOGS/conformance-auth.log"
# Two replicas over PostgreSQL behind haproxy, once over a shared directory
# and once over MinIO: conformance through the load balancer, cross-replica
# tag moves, alternating chunks, a replica killed mid-push
# (scripts/replicas.sh). Its two conformance lines are summed into one,
# counted below.
REPLICAS_LOG="$LOGS/replicas.log"
CONFORMANCE_REPLICAS_LOG="$LOGS/conformance-replicas.log"
step_replicas() {
	local rc=0
	set +e
	bash "$REPO_ROOT/scripts/replicas.sh" 2>&1 | tee "$REPLICAS_LOG"
	rc=${PIPESTATUS[0]}
	set -e
	grep -oE 'conformance: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$REPLICAS_LOG" |
		awk '{p += $2; f += $4; k += $6; n++} END {if (n) printf "conformance: %d passed, %d failed, %d skipped\n", p, f, k}' >"$CONFORMANCE_REPLICAS_LOG" || true
	return "$rc"
}
step_conformance() {
	timeout --foreground --kill-after=60 1500 bash "$REPO_ROOT/scripts/conformance.sh" 2>&1 | tee "$CONFORMANCE_LOG"
}
# The same suite with blob GETs answered by 307 to signed URLs, and with the
# spec's newer (dev) checks on: digest headers required, PUT ?tag= params.
step_conformance_redirect() {
	OCI_VERSION=dev WHARF_REDIRECT_ENABLED=true WHARFDEV_ARTIFACTS="$WHARFDEV_ARTIFACTS/redirect" \
		timeout --foreground --kill-after=60 1500 bash "$REPO_ROOT/scripts/conformance.sh" 2>&1 | tee "$CONFORMANCE_REDIRECT_LOG"
}

# The same suite with blobs in S3 (a MinIO started for the run), pre-signed
# S3 URLs as the signer and redirects on: blob GETs go straight to MinIO.
# With KIND seaweedfs (step "conf. seaweedfs"), the same on SeaweedFS's S3
# gateway, the second, independent implementation (about 25 s).
step_conformance_s3() {
	local kind=${1:-minio} log=${2:-$CONFORMANCE_S3_LOG} envfile art=s3 rc=0
	envfile="$WHARFDEV_ARTIFACTS/$kind/$kind.env"
	[[ $kind == minio ]] || art="s3-$kind"
	mkdir -p "$(dirname "$envfile")"
	start_minio "$envfile" "$kind" || { err "could not start $kind (scripts/lib.sh install_minio, install_seaweedfs)"; return 1; }
	trap stop_minio EXIT
	set -a
	# shellcheck disable=SC1090
	source "$envfile"
	set +a
	info "$kind at $WHARF_STORAGE_S3_ENDPOINT, bucket $WHARF_STORAGE_S3_BUCKET"
	# The dev suite, like the redirect step, except that the final answer of a blob
	# GET is the S3 server's own, and object storage cannot send Docker-Content-Digest
	# (the registry's 307 carries it): OCI_API_BLOBS_DIGEST_HEADER stays at the 1.1 default.
	OCI_VERSION=dev OCI_API_BLOBS_DIGEST_HEADER=false \
		WHARF_STORAGE_DRIVER=s3 WHARF_STORAGE_S3_PREFIX=conformance/ WHARF_SIGNING_SIGNER=s3 WHARF_REDIRECT_ENABLED=true \
		WHARFDEV_ARTIFACTS="$WHARFDEV_ARTIFACTS/$art" \
		timeout --foreground --kill-after=60 1500 bash "$REPO_ROOT/scripts/conformance.sh" 2>&1 | tee "$log" || rc=$?
	stop_minio
	return "$rc"
}
step_conformance_seaweedfs() { step_conformance_s3 seaweedfs "$CONFORMANCE_SEAWEEDFS_LOG"; }

# The same suite with auth on, in token mode: every request of the suite does
# the token dance (401 + Bearer challenge -> GET /token with Basic -> retry) as
# a user the policy gives pull/push/delete on conformance/** (not an admin).
step_conformance_auth() {
	local dir rc=0
	dir=$(mktemp -d "${TMPDIR:-/tmp}/wharf-conf-auth.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$dir'" EXIT
	printf 'conformance-password\n' | timeout --foreground 600 go run ./cmd/wharf user add \
		--htpasswd "$dir/htpasswd" --cost 4 conformance >/dev/null
	cat >"$dir/wharf.yaml" <<EOF
auth:
  mode: token
  htpasswd: $dir/htpasswd
  token:
    key_file: $dir/token-key.pem
  policy:
    rules:
      - users: [conformance]
        repos: ["conformance/**"]
        actions: [pull, push, delete]
EOF
	# A token grants its access claim and nothing more: the suite asks for a
	# token for the destination only, which does not cover the repository a
	# mount (with from= or automatic) would take the blob from, so Wharf
	# starts an ordinary upload (202, as the spec allows) and the suite counts
	# the two mount checks as skipped. Those skips are the security rule
	# working (docs/security.md); any other skip fails the run.
	CONFORMANCE_EXPECTED_SKIPS="blobs/mount/blob-mount|blobs/mount anonymous/blob-mount-anonymous" \
	OCI_USERNAME=conformance OCI_PASSWORD=conformance-password CONFORMANCE_EXTRA_SERVE_ARGS="--config $dir/wharf.yaml" \
		WHARFDEV_ARTIFACTS="$WHARFDEV_ARTIFACTS/auth" \
		timeout --foreground --kill-after=60 1500 bash "$REPO_ROOT/scripts/conformance.sh" 2>&1 | tee "$CONFORMANCE_AUTH_LOG" || rc=$?
	return "$rc"
}

if [[ ${1:-} == --step ]]; then
	"${2:?--step needs a name}"
	exit $?
fi

if [[ ${1:-} != --step ]]; then
	trap 'stop_step; exit 130' INT
	trap 'stop_step; exit 143' TERM
fi

# ---- run ------------------------------------------------------------------------
SECONDS=0
started=0
rm -f "$GO_TEST_LOG" "$CONFORMANCE_LOG" "$CONFORMANCE_REDIRECT_LOG" "$CONFORMANCE_S3_LOG" "$CONFORMANCE_SEAWEEDFS_LOG" "$CONFORMANCE_AUTH_LOG" "$CONFORMANCE_REPLICAS_LOG" "$REPLICAS_LOG"
run_step setup step_setup
run_step build step_build
build_ok=0
[[ ${step_results[-1]} == PASS ]] && build_ok=1
run_step gofmt step_gofmt
run_step "go vet" step_vet
run_step staticcheck step_staticcheck
run_step "go test -race" step_gotest
if [[ ${WHARFDEV_FUZZTIME:-} == 0 && -z ${CI:-} ]]; then
	not_run fuzz skip "WHARFDEV_FUZZTIME=0"
else
	run_step fuzz step_fuzz
fi
if [[ ${WHARFDEV_SKIP_CONFORMANCE:-0} == 1 && -z ${CI:-} ]]; then
	not_run conformance skip "WHARFDEV_SKIP_CONFORMANCE=1"
	not_run "conf. redirect" skip "WHARFDEV_SKIP_CONFORMANCE=1"
	not_run "conf. s3" skip "WHARFDEV_SKIP_CONFORMANCE=1"
	not_run "conf. seaweedfs" skip "WHARFDEV_SKIP_CONFORMANCE=1"
	not_run "conf. auth" skip "WHARFDEV_SKIP_CONFORMANCE=1"
	not_run replicas skip "WHARFDEV_SKIP_CONFORMANCE=1"
elif [[ $build_ok -ne 1 ]]; then
	not_run conformance fail "the build failed"
	not_run "conf. redirect" fail "the build failed"
	not_run "conf. s3" fail "the build failed"
	not_run "conf. seaweedfs" fail "the build failed"
	not_run "conf. auth" fail "the build failed"
	not_run replicas fail "the build failed"
else
	run_step conformance step_conformance
	run_step "conf. redirect" step_conformance_redirect
	run_step "conf. s3" step_conformance_s3
	run_step "conf. seaweedfs" step_conformance_seaweedfs
	run_step "conf. auth" step_conformance_auth
	run_step replicas step_replicas
fi

# ---- counts -----------------------------------------------------------------------
count() { local n; n=$(grep -cE "$1" "$2" 2>/dev/null) || true; printf '%s' "${n:-0}"; }
GO_TESTS_PASSED=$(count '^[[:space:]]*--- PASS:' "$GO_TEST_LOG")
GO_TESTS_FAILED=$(count '^[[:space:]]*--- FAIL:' "$GO_TEST_LOG")
GO_TESTS_SKIPPED=$(count '^[[:space:]]*--- SKIP:' "$GO_TEST_LOG")
GO_PKGS_OK=$(count '^ok[[:space:]]' "$GO_TEST_LOG")
GO_PKGS_FAILED=$(count '^FAIL[[:space:]]' "$GO_TEST_LOG")
CONF_PASSED=0 CONF_FAILED=0 CONF_SKIPPED=0
for log in "$CONFORMANCE_LOG" "$CONFORMANCE_REDIRECT_LOG" "$CONFORMANCE_S3_LOG" "$CONFORMANCE_SEAWEEDFS_LOG" "$CONFORMANCE_AUTH_LOG" "$CONFORMANCE_REPLICAS_LOG"; do
	[[ -f $log ]] || continue
	line=$(grep -E '^conformance: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n 1) || true
	if [[ -n $line ]]; then
		read -r p f k < <(sed -E 's/^conformance: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/' <<<"$line")
		CONF_PASSED=$((CONF_PASSED + p)) CONF_FAILED=$((CONF_FAILED + f)) CONF_SKIPPED=$((CONF_SKIPPED + k))
	fi
done

# ---- summary ------------------------------------------------------------------
failed=0
printf '\n%s======== summary (%ss) ========%s\n' "$_c_bold" "$((SECONDS - started))" "$_c_off"
for i in "${!step_names[@]}"; do
	r=${step_results[$i]}
	case $r in
	PASS) word=$(ok_word) detail='' ;;
	SKIP*) word=SKIP detail=" ${r#*|}" ;;
	*) word=$(fail_word) detail=" ${r#*|}" failed=1 ;;
	esac
	printf '  %-15s %s%s (%s)\n' "${step_names[$i]}" "$word" "$detail" "${step_times[$i]}"
done
printf '  go test packages: %s ok, %s failed\n' "$GO_PKGS_OK" "$GO_PKGS_FAILED"
printf '  logs and reports: %s\n' "$WHARFDEV_ARTIFACTS"
printf 'go test: %s passed, %s failed, %s skipped\n' "$GO_TESTS_PASSED" "$GO_TESTS_FAILED" "$GO_TESTS_SKIPPED"
printf 'conformance: %s passed, %s failed, %s skipped\n' "$CONF_PASSED" "$CONF_FAILED" "$CONF_SKIPPED"
printf 'total: %s passed, %s failed, %s skipped\n' \
	"$((GO_TESTS_PASSED + CONF_PASSED))" "$((GO_TESTS_FAILED + CONF_FAILED))" "$((GO_TESTS_SKIPPED + CONF_SKIPPED))"
if [[ $failed -ne 0 ]]; then
	printf '%sRESULT: FAILED%s\n' "$_c_red" "$_c_off"
	exit 1
fi
printf '%sRESULT: ALL CHECKS PASSED%s\n' "$_c_green" "$_c_off"
