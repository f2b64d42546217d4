#!/usr/bin/env bash
# Build the test control plane's binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet) from Debian's `kubernetes` source package, and the kubelet's pause
# image, once per machine. Prints the directory holding the binaries.
#
# The cache lives outside the clone ($DOCKWRIGHT_KUBE_CACHE, default
# /var/cache/dockwright/kube/<source version>-<patch hash>/), so every later clone and CI run on
# this machine finds it: the first build takes 10-15 minutes on 2 cores, a cached one no time.
#
# Patches applied to the tree before the build (each needed on these machines, none by choice):
# - vendor/github.com/modern-go/reflect2 (1.0.1) and vendor/github.com/json-iterator/go are
#   replaced by Debian's 1.0.2 / 1.1.12 sources: under Go 1.19, reflect2 1.0.1 makes the API
#   server segfault in map iteration on the first custom-resource write.
# - dockershim's defaultSandboxOOMAdj and the kubelet's kubelet/guaranteed OOM score adjustments
#   (pkg/kubelet/qos/policy.go) are set to 0: these machines' kernels refuse a negative
#   oom_score_adj, and the kubelet would fail every pod sandbox.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

# Bump when the patches below change: it is part of the cache key.
PATCH_LEVEL=1
CACHE_ROOT="${DOCKWRIGHT_KUBE_CACHE:-/var/cache/dockwright/kube}"
PAUSE_IMAGE="${DW_KUBE_PAUSE_IMAGE:-dockwright-test/pause:3.2}"

dw_ensure_packages golang-go rsync dpkg-dev gcc libc6-dev golang-github-modern-go-reflect2-dev \
    golang-github-json-iterator-go-dev

# A deb-src entry derived from the machine's own apt sources (never a host name of ours).
ensure_deb_src() {
    local src=/etc/apt/sources.list.d/debian.sources dst=/etc/apt/sources.list.d/dockwright-deb-src.sources
    if apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes'; then
        return 0
    fi
    [ -f "$src" ] || dw_die "no $src to derive a deb-src entry from"
    sed 's/^Types: deb$/Types: deb-src/' "$src" | dw_root tee "$dst" >/dev/null
    dw_root apt-get update -qq >/tmp/dockwright-apt.log 2>&1 ||
        { cat /tmp/dockwright-apt.log >&2; dw_die "apt-get update failed"; }
}

ensure_deb_src
version="$(apt-cache showsrc kubernetes | awk '/^Version:/ { print $2; exit }')"
[ -n "$version" ] || dw_die "apt knows no source version of kubernetes"
key="$(printf '%s patch %s\n' "$version" "$PATCH_LEVEL" | sha256sum | cut -c1-12)"
out="$CACHE_ROOT/${version//[^A-Za-z0-9.]/_}-$key"
bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet)

have_all() {
    local b
    for b in "${bins[@]}"; do [ -x "$out/bin/$b" ] || return 1; done
    [ -f "$out/pause.c" ]
}

if ! have_all; then
    dw_log "building the Kubernetes $version control plane into $out (10-15 minutes the first time)"
    work="$CACHE_ROOT/work-$key"
    rm -rf "$work"
    mkdir -p "$work"
    (cd "$work" && apt-get source -qq --download-only kubernetes >/dev/null 2>&1 &&
        dpkg-source -x --no-check ./*.dsc src >/dev/null) || dw_die "apt-get source kubernetes failed"
    tree="$work/src"

    # Patch: Debian's reflect2 1.0.2 / json-iterator 1.1.12 over the vendored copies.
    for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
        [ -d "/usr/share/gocode/src/$pkg" ] || dw_die "Debian's source of $pkg is not installed"
        rm -rf "${tree:?}/vendor/$pkg"
        mkdir -p "$tree/vendor/$pkg"
        cp -rL "/usr/share/gocode/src/$pkg/." "$tree/vendor/$pkg/"
        find "$tree/vendor/$pkg" -name '*_test.go' -delete
    done
    # Patch: no negative OOM score adjustments (refused by these kernels).
    sed -i -E 's/(defaultSandboxOOMAdj[[:space:]]+int[[:space:]]*=[[:space:]]*)-?[0-9]+/\10/' \
        "$tree/pkg/kubelet/dockershim/docker_sandbox.go"
    sed -i -E 's/((KubeletOOMScoreAdj|guaranteedOOMScoreAdj|KubeProxyOOMScoreAdj)[[:space:]]+int[[:space:]]*=[[:space:]]*)-?[0-9]+/\10/' \
        "$tree/pkg/kubelet/qos/policy.go"
    grep -q 'defaultSandboxOOMAdj[[:space:]]*int[[:space:]]*=[[:space:]]*0' "$tree/pkg/kubelet/dockershim/docker_sandbox.go" ||
        dw_die "could not patch defaultSandboxOOMAdj"

    # Build as debian/rules does: a GOPATH whose k8s.io/kubernetes is the tree.
    gopath="$work/gopath"
    mkdir -p "$gopath/src/k8s.io"
    ln -sfn "$tree" "$gopath/src/k8s.io/kubernetes"
    (
        cd "$gopath/src/k8s.io/kubernetes"
        export GOPATH="$gopath" GOCACHE="$work/gocache" CGO_ENABLED=0 GO111MODULE=off GOFLAGS=
        export KUBE_GIT_VERSION="v${version##*really}" KUBE_GIT_TREE_STATE=clean
        KUBE_GIT_VERSION="${KUBE_GIT_VERSION%%-*}"
        export KUBE_GIT_VERSION
        make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet" \
            >"$work/build.log" 2>&1
    ) || { tail -n 40 "$work/build.log" >&2; dw_die "the Kubernetes build failed (log: $work/build.log)"; }
    mkdir -p "$out/bin"
    for b in "${bins[@]}"; do
        found="$(find "$tree/_output" -type f -name "$b" -perm -u+x | head -n 1)"
        [ -n "$found" ] || dw_die "the build produced no $b"
        cp "$found" "$out/bin/$b"
    done
    cp "$tree/build/pause/linux/pause.c" "$out/pause.c"
    rm -rf "$work"
fi

# The pause image for the kubelet's sandboxes, built locally (no registry is reachable).
if ! docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then
    ctx="$(mktemp -d)"
    gcc -Os -static -o "$ctx/pause" "$out/pause.c" 2>/dev/null ||
        gcc -Os -static -DVERSION=dockwright -o "$ctx/pause" "$out/pause.c"
    printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
    docker build -q -t "$PAUSE_IMAGE" "$ctx" >/dev/null
    rm -rf "$ctx"
fi

echo "$out/bin"
