#!/usr/bin/env bash
# The scale-out shape end to end: two `wharf serve` replicas (the built
# binary) over one throwaway PostgreSQL cluster, behind HAProxy on loopback
# (round robin), twice: over one shared blob directory, and over MinIO with
# S3 pre-signed redirects. Each time
#   - the OCI conformance suite through the load balancer (0 failures, 0 skips),
#   - a tag moved through replica A served by replica B within 1 s,
#   - a chunked upload whose PATCHes alternate between the replicas,
#   - replica A killed (SIGKILL) mid-PATCH: the client's retry through the
#     load balancer finishes on B and every image pushed before is intact.
# All of it is e2e/replicas (go test); this script turns the conformance run on.
# The fault soak there (TestSoak; WHARFDEV_SOAK=10m for a long run) is run by
#   go test -count=1 -v -run '^TestSoak$' ./e2e/replicas/
#
#   scripts/replicas.sh
#
# Needs PostgreSQL server binaries, haproxy and MinIO (scripts/test.sh
# setup installs them). WHARFDEV_REQUIRE_SERVERS=1 makes their absence a
# failure instead of a skip.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_go
log "two replicas behind haproxy, conformance through the load balancer"
REPLICAS_CONFORMANCE=1 timeout --foreground --kill-after=30 1500 \
	go test -count=1 -v -timeout 25m -run '^TestReplicas$' ./e2e/replicas/
