#!/usr/bin/env bash
# Build dockwright's own image offline (no registry needed): `cargo build --release` on the host,
# then a FROM scratch image holding the binary as its entrypoint. A static binary is copied
# alone; a dynamically linked one (the host's default: glibc) comes with exactly the shared
# libraries and loader `ldd` lists, at the same paths. deploy/Dockerfile is the registry-backed
# equivalent (static binary on distroless/static).
#
# Then a smoke test, unless --no-smoke: the image's `--version`, and a real converge through the
# mounted socket (`apply` of a busybox Container, checked on the daemon, then `delete`).
#
# Usage: scripts/build-agent-image.sh [--tag IMAGE] [--binary PATH] [--no-smoke]
#   (default tag: dockwright:dev, or $DOCKWRIGHT_IMAGE). --binary: put that dockwright binary
#   in the image instead of building a release one (the Kubernetes tests use the binary of
#   their own test build).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$DW_ROOT"

tag="${DOCKWRIGHT_IMAGE:-dockwright:dev}"
smoke=1
bin=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --tag) [ "$#" -ge 2 ] || dw_die "--tag needs a value"; tag="$2"; shift 2 ;;
        --binary) [ "$#" -ge 2 ] || dw_die "--binary needs a value"; bin="$2"; shift 2 ;;
        --no-smoke) smoke=0; shift ;;
        *) dw_die "usage: $0 [--tag IMAGE] [--binary PATH] [--no-smoke]" ;;
    esac
done

dw_ensure_docker

if [ -z "$bin" ]; then
    dw_log "cargo build --release"
    cargo build --release --locked --bin dockwright
    bin="${CARGO_TARGET_DIR:-$DW_ROOT/target}/release/dockwright"
    [ -x "$bin" ] || dw_die "$bin not found after cargo build"
fi
[ -x "$bin" ] || dw_die "$bin is not an executable"

ctx="$(mktemp -d)"
owner="dwtest-agentimg-$$"
manifests=""
cleanup() {
    rm -rf "$ctx"
    [ -z "$manifests" ] || rm -rf "$manifests"
    dw_remove_owned "$owner" || true
}
trap cleanup EXIT

rootfs="$ctx/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/tmp" "$rootfs/etc"
chmod 1777 "$rootfs/tmp"
cp "$bin" "$rootfs/usr/local/bin/dockwright"

# ldd: "not a dynamic executable" / "statically linked" for a static binary; otherwise lines
# `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and the loader `/lib64/ld-linux-x86-64.so.2 (0x...)`.
ldd_out="$(ldd "$bin" 2>&1 || true)"
if printf '%s\n' "$ldd_out" | grep -q -e 'not a dynamic executable' -e 'statically linked'; then
    dw_log "dockwright is statically linked: copying the binary alone"
else
    libs="$(printf '%s\n' "$ldd_out" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)"
    [ -n "$libs" ] || dw_die "cannot read the shared libraries of $bin from ldd:\n$ldd_out"
    missing="$(printf '%s\n' "$ldd_out" | grep 'not found' || true)"
    [ -z "$missing" ] || dw_die "$bin needs libraries this host lacks: $missing"
    for lib in $libs; do
        mkdir -p "$rootfs$(dirname "$lib")"
        cp -L "$lib" "$rootfs$lib" # -L: the file itself, under the name the loader asks for
    done
    dw_log "dockwright is dynamically linked: copying $(echo $libs | wc -w) libraries: $(echo $libs)"
fi
# Name resolution for a tcp:// DOCKER_HOST by name; Docker bind-mounts its own /etc/hosts at run.
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"

version="$("$bin" --version | awk '{ print $2 }')"
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
LABEL org.opencontainers.image.title="dockwright" \\
      org.opencontainers.image.version="$version" \\
      org.opencontainers.image.revision="$revision"
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/dockwright"]
CMD ["--help"]
DOCKERFILE

dw_log "building $tag"
# The classic builder: the daemon may be 20.10 and the CLI may lack buildx.
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" >/dev/null 2>/tmp/dockwright-agent-image.log ||
    { cat /tmp/dockwright-agent-image.log >&2; dw_die "docker build of $tag failed"; }
dw_log "built $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{ printf "%.1f MB", $1 / 1e6 }'))"

[ "$smoke" = 1 ] || exit 0

dw_log "smoke test: $tag --version"
out="$(docker run --rm "$tag" --version)"
[ "$out" = "dockwright $version" ] || dw_die "$tag --version printed '$out', want 'dockwright $version'"

dw_log "smoke test: apply and delete through the mounted socket (owner $owner)"
"$DW_ROOT/scripts/build-test-image.sh"
manifests="$(mktemp -d)"
cat >"$manifests/smoke.yaml" <<YAML
apiVersion: dockwright.dev/v1alpha1
kind: Container
metadata:
  name: agent-image-smoke
spec:
  image: $DW_TEST_IMAGE
  imagePullPolicy: Never
  command: [sleep, "300"]
YAML
run_in_image() {
    docker run --rm -v /var/run/docker.sock:/var/run/docker.sock -v "$manifests:/manifests:ro" \
        "$tag" "$@" --owner "$owner"
}
run_in_image apply -f /manifests
state="$(docker ps -a --filter "label=dockwright.dev/owner=$owner" --format '{{.Names}} {{.State}}')"
[ "$state" = "agent-image-smoke running" ] ||
    dw_die "after apply from the image, the daemon shows '$state', want 'agent-image-smoke running'"
run_in_image delete -f /manifests
left="$(docker ps -a -q --filter "label=dockwright.dev/owner=$owner")"
[ -z "$left" ] || dw_die "delete from the image left containers: $left"
dw_log "smoke test passed: $tag converges the host daemon through the mounted socket"
