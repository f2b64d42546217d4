#!/usr/bin/env bash
# Start a real, single-node Kubernetes control plane on loopback for the tests: etcd (Debian's
# etcd-server), kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet on this
# machine's Docker daemon (dockershim), all 1.20 built from Debian's source package by
# scripts/build-kube.sh (cached per machine). kubectl: the machine's, else Debian's
# kubernetes-client (1.20).
#
# Idempotent: components that run are left alone, those that do not (a first start, or one a
# test stopped, e.g. the API server restarted mid-watch) are started. Writes
# $DOCKWRIGHT_TEST_STATE/kube/env, which `source` turns into KUBECONFIG and the
# DOCKWRIGHT_TEST_KUBE_* variables the tests read, and prints the same lines.
#
# State: $DOCKWRIGHT_TEST_STATE/kube (default /tmp/dockwright-test/kube): pki, tokens,
# kubeconfigs, etcd data, logs (<component>.log) and pid files. scripts/stop-kube.sh stops it all.
#
# Settings on this kind of machine, and why:
# - authentication by static tokens (admin in system:masters, the kubelet as system:node:<name>),
#   authorization Node,RBAC: the agent's ServiceAccount gets only what the chart's ClusterRole
#   grants, so a missing verb fails a test.
# - the API server's self-signed certificate (--cert-dir) carries its CA as the second PEM block:
#   it goes to the controller manager as --root-ca-file (pods verify the server with it) and into
#   the kubeconfigs.
# - kubelet: cgroupfs driver, no swap check, no QoS cgroups, no node-allocatable enforcement,
#   and image garbage collection off (it shares the daemon with every other test and would
#   remove every image no pod uses above its disk threshold — the test images included);
#   no eviction thresholds for the same reason (its eviction manager also removes images). Its pause image is built locally.
# - no service proxy and no CNI: pods that must reach the API server use hostNetwork and
#   KUBERNETES_SERVICE_HOST/PORT=127.0.0.1:6443.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

KS="$DW_TEST_STATE/kube"
NODE="${DW_KUBE_NODE:-dw-node-1}"
API_PORT=6443
ETCD_CLIENT=127.0.0.1:23790
ETCD_PEER=127.0.0.1:23800
PAUSE_IMAGE="dockwright-test/pause:3.2"

dw_ensure_docker
dw_ensure_packages etcd-server openssl curl
# kubectl: the machine's own when it has one (any client within the usual skew of 1.20 works),
# else Debian's kubernetes-client (1.20).
command -v kubectl >/dev/null 2>&1 || dw_ensure_packages kubernetes-client
# The package's own etcd service (if the install started one) is not ours: we run etcd on
# other ports, so it does no harm, but it need not run.
if [ -e /etc/init.d/etcd ] && [ ! -e "$KS/.etcd-service-stopped" ]; then
    dw_root /etc/init.d/etcd stop >/dev/null 2>&1 || true
fi
bin="$(DW_KUBE_PAUSE_IMAGE="$PAUSE_IMAGE" "$DW_ROOT/scripts/build-kube.sh" | tail -n 1)"
[ -x "$bin/kube-apiserver" ] || dw_die "build-kube.sh gave no binaries ($bin)"
mkdir -p "$KS/pki" "$KS/etcd" "$KS/kubelet" && touch "$KS/.etcd-service-stopped"

# A process runs when its pid is alive and not a zombie (an unreaped corpse answers kill -0).
running() {
    local pid
    [ -f "$KS/$1.pid" ] || return 1
    pid="$(cat "$KS/$1.pid")"
    [ -r "/proc/$pid/stat" ] || return 1
    [ "$(awk '{ sub(/.*\) /, ""); print substr($0, 1, 1) }' "/proc/$pid/stat")" != Z ]
}

# start NAME COMMAND...: run it detached (setsid, no inherited stdio), log and pid in $KS.
start() {
    local name="$1"
    shift
    running "$name" && return 0
    dw_log "starting $name"
    setsid "$@" </dev/null >>"$KS/$name.log" 2>&1 &
    echo $! >"$KS/$name.pid"
}

# Credentials, made once per state directory.
if [ ! -s "$KS/tokens.csv" ]; then
    admin_token="$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')"
    kubelet_token="$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')"
    printf '%s,admin,admin,system:masters\n%s,system:node:%s,kubelet-%s,system:nodes\n' \
        "$admin_token" "$kubelet_token" "$NODE" "$NODE" >"$KS/tokens.csv"
    chmod 600 "$KS/tokens.csv"
fi
admin_token="$(awk -F, '$2 == "admin" { print $1 }' "$KS/tokens.csv")"
kubelet_token="$(awk -F, -v u="system:node:$NODE" '$2 == u { print $1 }' "$KS/tokens.csv")"
if [ ! -s "$KS/pki/sa.key" ]; then
    openssl genrsa -out "$KS/pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$KS/pki/sa.key" -pubout -out "$KS/pki/sa.pub" 2>/dev/null
fi

# etcd
start etcd etcd --name dockwright-test --data-dir "$KS/etcd" \
    --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
    --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
    --initial-cluster "dockwright-test=http://$ETCD_PEER" --log-level warn
for _ in $(seq 1 100); do
    curl -fsS --max-time 2 "http://$ETCD_CLIENT/health" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS --max-time 2 "http://$ETCD_CLIENT/health" >/dev/null || { tail -n 20 "$KS/etcd.log" >&2; dw_die "etcd did not answer"; }

# kube-apiserver
start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://$ETCD_CLIENT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --cert-dir "$KS/pki" \
    --token-auth-file "$KS/tokens.csv" \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$KS/pki/sa.pub" \
    --service-account-signing-key-file "$KS/pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --allow-privileged=true \
    --v 1
api_ready() {
    curl -fsS --max-time 2 -k -H "Authorization: Bearer $admin_token" \
        "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}
for _ in $(seq 1 300); do
    api_ready && break
    running kube-apiserver || break
    sleep 0.2
done
api_ready || { tail -n 30 "$KS/kube-apiserver.log" >&2; dw_die "kube-apiserver did not become ready"; }

# The CA that signed the server's certificate: the second PEM block of its self-signed file.
awk '/BEGIN CERTIFICATE/ { n++ } n == 2 { print } /END CERTIFICATE/ && n == 2 { exit }' \
    "$KS/pki/apiserver.crt" >"$KS/pki/ca.crt"
[ -s "$KS/pki/ca.crt" ] || cp "$KS/pki/apiserver.crt" "$KS/pki/ca.crt"
ca_b64="$(base64 -w0 <"$KS/pki/ca.crt")"

# write_kubeconfig FILE USER TOKEN
write_kubeconfig() {
    cat >"$1.tmp" <<YAML
apiVersion: v1
kind: Config
clusters:
  - name: dockwright-test
    cluster:
      server: https://127.0.0.1:$API_PORT
      certificate-authority-data: $ca_b64
users:
  - name: $2
    user:
      token: $3
contexts:
  - name: dockwright-test
    context: { cluster: dockwright-test, user: $2 }
current-context: dockwright-test
YAML
    chmod 600 "$1.tmp"
    mv "$1.tmp" "$1"
}
write_kubeconfig "$KS/admin.kubeconfig" admin "$admin_token"
write_kubeconfig "$KS/kubelet.kubeconfig" "system:node:$NODE" "$kubelet_token"

start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$KS/admin.kubeconfig" \
    --service-account-private-key-file "$KS/pki/sa.key" \
    --root-ca-file "$KS/pki/ca.crt" \
    --use-service-account-credentials=true \
    --leader-elect=false \
    --bind-address 127.0.0.1 --port 0 --secure-port 10257 \
    --v 1
start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$KS/admin.kubeconfig" \
    --leader-elect=false \
    --bind-address 127.0.0.1 --port 0 --secure-port 10259 \
    --v 1

cat >"$KS/kubelet-config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: false }
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# No eviction at all (an empty map, not the defaults): on this daemon's fuse-overlayfs the
# kubelet saw disk pressure and its eviction manager removed every image no pod used, the
# test image included, in the middle of a test run.
evictionHard: {}
fileCheckFrequency: 5s
syncFrequency: 10s
YAML
start kubelet "$bin/kubelet" \
    --config "$KS/kubelet-config.yaml" \
    --kubeconfig "$KS/kubelet.kubeconfig" \
    --root-dir "$KS/kubelet" \
    --cert-dir "$KS/kubelet/pki" \
    --container-runtime docker \
    --pod-infra-container-image "$PAUSE_IMAGE" \
    --hostname-override "$NODE" \
    --node-ip 127.0.0.1 \
    --v 1

export KUBECONFIG="$KS/admin.kubeconfig"
for _ in $(seq 1 180); do
    if [ "$(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; then
        break
    fi
    running kubelet || break
    sleep 1
done
[ "$(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] ||
    { tail -n 30 "$KS/kubelet.log" >&2; dw_die "node $NODE did not become Ready"; }
# The default ServiceAccount (made by the controller manager) must exist before pods can start.
for _ in $(seq 1 60); do
    kubectl -n default get serviceaccount default >/dev/null 2>&1 && break
    sleep 0.5
done

cat >"$KS/env.tmp" <<ENV
export KUBECONFIG=$KS/admin.kubeconfig
export DOCKWRIGHT_TEST_KUBECONFIG=$KS/admin.kubeconfig
export DOCKWRIGHT_TEST_KUBE_NODE=$NODE
export DOCKWRIGHT_TEST_KUBE_STATE=$KS
export DOCKWRIGHT_TEST_KUBE_BIN=$bin
export DOCKWRIGHT_TEST_HELM_PYTHON=$(dw_helm_python)
ENV
mv "$KS/env.tmp" "$KS/env"
cat "$KS/env"
