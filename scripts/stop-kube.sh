#!/usr/bin/env bash
# Stop the test control plane started by scripts/start-kube.sh: the kubelet first, then the
# pods' containers it left on the daemon (named k8s_*), the control plane and etcd.
# --wipe also removes its state (etcd data, certificates, tokens); the built binaries stay cached.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

KS="$DW_TEST_STATE/kube"

stop() {
    local pidfile="$KS/$1.pid" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

stop kubelet
mapfile -t pods < <(docker ps -aq --filter name='^k8s_' 2>/dev/null || true)
[ "${#pods[@]}" -eq 0 ] || docker rm -f "${pods[@]}" >/dev/null 2>&1 || true
for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$c"; done
# The kubelet's secret volumes are tmpfs mounts under its root dir.
if [ -d "$KS/kubelet" ]; then
    grep -o " $KS/kubelet/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || true; done
fi
if [ "${1:-}" = --wipe ]; then
    rm -rf "$KS"
fi
dw_log "test control plane stopped"
