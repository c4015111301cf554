# shellcheck shell=bash
# Shared helpers for scripts/test.sh and scripts/conformance.sh.
# Source it; do not execute it. Works with bash 5 (Debian bookworm).

# Variables here are used by the scripts that source this file.
# shellcheck disable=SC2034

# ---- pinned versions (change here, caches are keyed by them) -------------
# staticcheck: newest release on the Go module proxy that supports Go 1.26
# (`go list -m -versions honnef.co/go/tools`).
STATICCHECK_VERSION="${STATICCHECK_VERSION:-v0.8.2}"
# OCI distribution-spec conformance suite (the rewritten, non-Ginkgo suite).
# The module has no tags; this pseudo-version is what the proxy serves.
CONFORMANCE_MODULE="github.com/opencontainers/distribution-spec/conformance"
CONFORMANCE_VERSION="${CONFORMANCE_VERSION:-v0.0.0-20260831232431-97274622c111}"
# MinIO, the real S3 server the S3 blob store is tested against (no mocks).
# Built from source through the Go module proxy: the module has no semver
# tags, this pseudo-version is the newest the proxy serves
# (`go list -m github.com/minio/minio@latest`) and it builds with Go 1.26.
# Keep it in sync with internal/miniotest.Version.
MINIO_MODULE="github.com/minio/minio"
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
# SeaweedFS, the second, independent S3 server (its S3 gateway, `weed mini`).
# Its release tags are not semver, so the proxy serves pseudo-versions only:
# this is the newest (`go list -m github.com/seaweedfs/seaweedfs@latest`).
# Keep it in sync with internal/miniotest.SeaweedFSVersion.
SEAWEEDFS_MODULE="github.com/seaweedfs/seaweedfs"
SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"

# ---- locations ------------------------------------------------------------
# Everything installed or built by the scripts lives here, outside the repo,
# keyed by version, so a second run is quick.
WHARFDEV_CACHE="${WHARFDEV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf-ci}"
WHARFDEV_ARTIFACTS="${WHARFDEV_ARTIFACTS:-/tmp/wharf-artifacts}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ---- output ---------------------------------------------------------------
if [[ -t 1 ]]; then
	_c_bold=$'\e[1m' _c_red=$'\e[31m' _c_green=$'\e[32m' _c_yellow=$'\e[33m' _c_off=$'\e[0m'
else
	_c_bold='' _c_red='' _c_green='' _c_yellow='' _c_off=''
fi
log()  { printf '%s==>%s %s\n' "$_c_bold" "$_c_off" "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf '%sWARNING:%s %s\n' "$_c_yellow" "$_c_off" "$*" >&2; }
err()  { printf '%sERROR:%s %s\n' "$_c_red" "$_c_off" "$*" >&2; }
die()  { err "$*"; exit 1; }
ok_word()   { printf '%sPASS%s' "$_c_green" "$_c_off"; }
fail_word() { printf '%sFAIL%s' "$_c_red" "$_c_off"; }

# ---- prerequisites --------------------------------------------------------
apt_updated=0
# apt_install PKG... : install Debian packages when we are root and apt exists.
apt_install() {
	if ! command -v apt-get >/dev/null 2>&1; then
		return 1
	fi
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
			sudo=(sudo -n)
		else
			return 1
		fi
	fi
	if [[ $apt_updated -eq 0 ]]; then
		timeout --foreground 300 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null || return 1
		apt_updated=1
	fi
	timeout --foreground 600 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "$@" </dev/null
}

# need_cmd CMD [DEBIAN_PACKAGE] : make sure CMD exists, installing it if we can.
need_cmd() {
	local cmd=$1 pkg=${2:-$1}
	command -v "$cmd" >/dev/null 2>&1 && return 0
	warn "$cmd not found; trying to install Debian package $pkg"
	apt_install "$pkg" >/dev/null || true
	command -v "$cmd" >/dev/null 2>&1 || die "$cmd is required (Debian package: $pkg)"
}

require_go() {
	command -v go >/dev/null 2>&1 || die "go is not on PATH (Go 1.26 or newer is required)"
	local v
	v=$(go env GOVERSION)
	v=${v#go}
	local major=${v%%.*} rest=${v#*.}
	local minor=${rest%%.*}
	minor=${minor%%[!0-9]*}
	if [[ ${major:-0} -lt 1 ]] || { [[ $major -eq 1 ]] && [[ ${minor:-0} -lt 26 ]]; }; then
		die "Go 1.26 or newer is required, found go$v"
	fi
}

# ---- HTTP probing without depending on curl ------------------------------
# http_status HOST PORT PATH : prints the HTTP status code of a GET, or 000.
http_status() {
	local host=$1 port=$2 path=$3
	if command -v curl >/dev/null 2>&1; then
		local code
		code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$host:$port$path" 2>/dev/null) || true
		printf '%s' "${code:-000}"
		return 0
	fi
	(
		local proto code rest
		exec 3<>"/dev/tcp/$host/$port" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$path" "$host" "$port" >&3
		read -r -t 5 proto code rest <&3 || exit 1
		printf '%s' "${code:-000}"
	) 2>/dev/null || printf '000'
}

# port_in_use HOST PORT : true when something accepts connections there.
port_in_use() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# free_port : prints a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
	local p _
	for _ in $(seq 1 50); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		if ! port_in_use 127.0.0.1 "$p"; then
			printf '%s' "$p"
			return 0
		fi
	done
	return 1
}

# atomic_install SRC DEST : move a freshly built file into the cache atomically.
atomic_install() {
	local src=$1 dest=$2
	mkdir -p "$(dirname "$dest")"
	cp -f "$src" "$dest.tmp.$$"
	chmod +x "$dest.tmp.$$"
	mv -f "$dest.tmp.$$" "$dest"
}

# build_once NAME VERSION BUILD : unless $WHARFDEV_CACHE/bin/NAME-VERSION is
# there, run BUILD TMPDIR (a function that leaves the binary NAME in
# TMPDIR) and install the binary there.
build_once() {
	local name=$1 version=$2 build=$3 bin="$WHARFDEV_CACHE/bin/$1-$2" tmp="$WHARFDEV_CACHE/bin-tmp-$1"
	if [[ -x $bin ]]; then
		info "$name: cached $bin"
		return 0
	fi
	log "building $name $version from the Go module proxy (once; takes minutes)"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	if ! "$build" "$tmp"; then
		rm -rf "$tmp"
		err "building $name $version failed"
		return 1
	fi
	atomic_install "$tmp/$name" "$bin"
	rm -rf "$tmp"
	info "$name: built $bin"
}

# install_minio : build MinIO once into $WHARFDEV_CACHE/bin/minio-$MINIO_VERSION
# (a few minutes and ~3 GB of RAM the first time; instant afterwards).
install_minio() { build_once minio "$MINIO_VERSION" _build_minio; }
_build_minio() {
	(cd "$1" && GOBIN="$1" GOFLAGS='' GOWORK=off timeout --foreground 2400 \
		nice -n 10 go install "$MINIO_MODULE@$MINIO_VERSION")
}

# install_seaweedfs : build SeaweedFS's weed once into
# $WHARFDEV_CACHE/bin/weed-$SEAWEEDFS_VERSION (about 10 CPU minutes the first
# time). Its go.mod has a replace directive, which `go install pkg@version`
# refuses, so the module is downloaded through the proxy and built as the
# main module.
install_seaweedfs() { build_once weed "$SEAWEEDFS_VERSION" _build_seaweedfs; }
_build_seaweedfs() {
	local dir
	dir=$(cd "$1" && GOFLAGS='' GOWORK=off timeout --foreground 600 \
		go mod download -json "$SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || true
	[[ -n $dir && -d $dir ]] || return 1
	(cd "$dir" && GOFLAGS=-mod=mod GOWORK=off timeout --foreground 2400 \
		nice -n 10 go build -trimpath -o "$1/weed" ./weed)
}

# start_minio ENVFILE [KIND] : start a MinIO (or, with KIND seaweedfs, a
# SeaweedFS) with a fresh bucket in the background
# (internal/miniotest/miniorun); writes WHARF_STORAGE_S3_* assignments to
# ENVFILE and sets MINIORUN_PID. Stop it with stop_minio.
MINIORUN_PID=''
start_minio() {
	local envfile=$1 kind=${2:-minio} i
	rm -f "$envfile"
	(cd "$REPO_ROOT" && timeout --foreground 300 go build -o "$envfile.bin" ./internal/miniotest/miniorun) || return 1
	WHARFDEV_MINIO_BIN="${WHARFDEV_MINIO_BIN:-$WHARFDEV_CACHE/bin/minio-$MINIO_VERSION}" \
		WHARFDEV_SEAWEEDFS_BIN="${WHARFDEV_SEAWEEDFS_BIN:-$WHARFDEV_CACHE/bin/weed-$SEAWEEDFS_VERSION}" \
		"$envfile.bin" -env "$envfile" -kind "$kind" >"$envfile.log" 2>&1 </dev/null &
	MINIORUN_PID=$!
	for i in $(seq 1 600); do
		[[ -s $envfile ]] && return 0
		kill -0 "$MINIORUN_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$envfile.log" >&2 || true
	stop_minio
	return 1
}
stop_minio() {
	if [[ -n $MINIORUN_PID ]]; then
		kill -TERM "$MINIORUN_PID" 2>/dev/null || true
		wait "$MINIORUN_PID" 2>/dev/null || true
		MINIORUN_PID=''
	fi
}

# pg_bindir : prints the directory holding PostgreSQL's initdb and postgres
# (Debian keeps them out of PATH, in /usr/lib/postgresql/<version>/bin).
pg_bindir() {
	local d dirs=()
	[[ -n ${WHARFDEV_PG_BIN:-} ]] && dirs+=("$WHARFDEV_PG_BIN")
	# newest version first
	while IFS= read -r d; do dirs+=("$d"); done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4 -n -r)
	for d in "${dirs[@]}"; do
		if [[ -x $d/initdb && -x $d/postgres ]]; then
			printf '%s' "$d"
			return 0
		fi
	done
	return 1
}

# apt_install_nostart ARGS... : apt_install, quietly, with services kept
# from starting by a temporary policy-rc.d (where none exists). A failure
# is left to the caller, which checks for what it wanted installed.
apt_install_nostart() {
	local policy_added=0
	if [[ ! -e /usr/sbin/policy-rc.d && $(id -u) -eq 0 ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_added=1
	fi
	apt_install "$@" >/dev/null || true
	if [[ $policy_added -eq 1 ]]; then
		rm -f /usr/sbin/policy-rc.d
	fi
	return 0
}

# install_postgres : the PostgreSQL server binaries for internal/pgtest's
# throwaway clusters (Debian package postgresql). Skipped when installed
# (cache-friendly). Debian's own cluster is neither created nor started:
# createcluster.conf says so before the package's postinst reads it, and a
# temporary policy-rc.d (where none exists) keeps services from starting.
install_postgres() {
	local d
	if d=$(pg_bindir); then
		info "postgresql: $d"
		return 0
	fi
	log "installing postgresql (Debian package)"
	if [[ ! -e /etc/postgresql-common/createcluster.conf && $(id -u) -eq 0 ]]; then
		mkdir -p /etc/postgresql-common
		printf 'create_main_cluster = false\n' >/etc/postgresql-common/createcluster.conf
	fi
	apt_install_nostart -o Dpkg::Options::=--force-confold postgresql
	d=$(pg_bindir) || { err "postgresql could not be installed (Debian package postgresql)"; return 1; }
	info "postgresql: $d"
}

# install_haproxy : the load balancer of scripts/replicas.sh (Debian
# package haproxy; its service is not used: replicas.sh runs its own).
install_haproxy() {
	if command -v haproxy >/dev/null 2>&1; then
		info "haproxy: $(command -v haproxy)"
		return 0
	fi
	log "installing haproxy (Debian package)"
	apt_install_nostart haproxy
	command -v haproxy >/dev/null 2>&1 || { err "haproxy could not be installed"; return 1; }
}
