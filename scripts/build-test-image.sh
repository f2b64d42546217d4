#!/usr/bin/env bash
# Build dockwright-test/busybox:latest, the image the tests and examples run: Debian's static
# busybox copied into a FROM scratch image with its applets linked under /bin. Nothing is pulled
# (no registry is reachable here). Does nothing when the image already exists; --force rebuilds.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

force=0
[ "${1:-}" = "--force" ] && force=1

dw_ensure_docker
if [ "$force" = 0 ] && docker image inspect "$DW_TEST_IMAGE" >/dev/null 2>&1; then
    dw_log "test image $DW_TEST_IMAGE present"
    exit 0
fi

dw_ensure_packages busybox-static
busybox="${DOCKWRIGHT_TEST_BUSYBOX:-/bin/busybox}"
[ -x "$busybox" ] || dw_die "$busybox not found (install busybox-static)"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$busybox" "$ctx/busybox"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
DOCKERFILE

dw_log "building $DW_TEST_IMAGE"
# The classic builder: the daemon may be 20.10 and the CLI may lack buildx.
DOCKER_BUILDKIT=0 docker build -q -t "$DW_TEST_IMAGE" "$ctx" >/dev/null 2>/tmp/dockwright-build.log ||
    { cat /tmp/dockwright-build.log >&2; dw_die "docker build of $DW_TEST_IMAGE failed"; }
out="$(docker run --rm "$DW_TEST_IMAGE" sh -c 'echo ok')"
[ "$out" = ok ] || dw_die "$DW_TEST_IMAGE does not run a shell (is $busybox static?)"
dw_log "built $DW_TEST_IMAGE"
