#!/usr/bin/env bash
# Benchmark Wharf on the S3 blob store against a real MinIO (started by the
# benchmark on 127.0.0.1, temp dir, random credentials): flat push RSS, final
# PUT latency, registry CPU per pull with and without redirects, and push
# throughput against the AWS SDK's upload manager. All figures come from one
# run; the markdown report goes to stdout and bench/results-s3.md.
#
#   bench/s3.sh                      everything
#   BENCH_S3_ARGS="-only pull" bench/s3.sh
#
# Needs the MinIO binary scripts/test.sh installs (or WHARF_MINIO_BIN).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
if [[ -z ${WHARF_MINIO_BIN:-} ]]; then
	install_minio >&2
	export WHARF_MINIO_BIN="$WHARF_CACHE/bin/minio-$MINIO_VERSION"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/wharf" ./cmd/wharf
go build -o "$tmp/load" ./bench/load
read -r -a extra <<<"${BENCH_S3_ARGS:-}"
OUT=${BENCH_OUT:-$ROOT/bench/results-s3.md}
"$tmp/load" s3 -wharf "$tmp/wharf" -out "$tmp/results.json" "${extra[@]}" 2>&1 | tee "$tmp/out.txt"
{
	echo "# Wharf on S3 (MinIO) — $(date -u +%Y-%m-%dT%H:%MZ)"
	echo
	echo "$(nproc) CPUs, $(go env GOVERSION), MinIO $MINIO_VERSION, part size 8 MiB. One run; figures and checks:"
	echo
	echo '```'
	cat "$tmp/out.txt"
	echo '```'
} >"$OUT"
echo "report: $OUT" >&2
! grep -q '^FAIL' "$tmp/out.txt"
