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
# Needs the MinIO binary scripts/test.sh installs (or WHARFDEV_MINIO_BIN).
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
if [[ -z ${WHARFDEV_MINIO_BIN:-} ]]; then
	install_minio >&2
	export WHARFDEV_MINIO_BIN="$WHARFDEV_CACHE/bin/minio-$MINIO_VERSION"
fi
bench_tmp s3
build_tools
read -r -a extra <<<"${BENCH_S3_ARGS:-}"
OUT=${BENCH_OUT:-$ROOT/bench/results-s3.md}
"$LOAD" s3 -wharf "$WHARF" -out "$TMP/results.json" "${extra[@]}" 2>&1 | tee "$TMP/out.txt"
{
	echo "# Wharf on S3 (MinIO) — $(date -u +%Y-%m-%dT%H:%MZ)"
	echo
	echo "$(nproc) CPUs, $(go env GOVERSION), MinIO $MINIO_VERSION, part size 8 MiB. One run; figures and checks:"
	echo
	echo '```'
	cat "$TMP/out.txt"
	echo '```'
} >"$OUT"
echo "report: $OUT" >&2
! grep -q '^FAIL' "$TMP/out.txt"
