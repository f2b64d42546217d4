# shellcheck shell=bash
# Shared helpers for the scripts in scripts/ and for .ci/run. Source it, do not run it.
# Every helper is idempotent: calling it when its job is already done does nothing but check.

# Repository root, whatever the caller's working directory.
DW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DW_ROOT

# Where the test registries keep their state (storage, htpasswd, credentials, pid files).
# A fixed place outside the work tree: the registries serve fixed ports, so there is one
# set per machine, shared by every clone.
DW_TEST_STATE="${DOCKWRIGHT_TEST_STATE:-/tmp/dockwright-test}"
export DW_TEST_STATE

# The image every test and example runs (busybox in a FROM scratch image).
DW_TEST_IMAGE="dockwright-test/busybox:latest"
export DW_TEST_IMAGE

# Debian packages the tests and examples need (docker-compose: the convert round trip; the
# GitOps tests: age for encrypted fixtures, sshd and ssh-keygen for the SSH server, openssl
# for the HTTPS server's private CA).
DW_PACKAGES=(busybox-static docker-registry apache2-utils curl docker-compose age
    openssh-server openssh-client openssl)
# git (the GitOps tests run `git daemon` and commit with the CLI), unless one is installed
# already (from source under /usr/local, say).
command -v git >/dev/null 2>&1 || DW_PACKAGES+=(git)

dw_log() { printf '==> %s\n' "$*" >&2; }
dw_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, through sudo otherwise.
dw_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        dw_die "need root (or sudo) to run: $*"
    fi
}

# Install the Debian packages given (default: DW_PACKAGES) that are missing. Runs
# `apt-get update` only when an install fails for want of fresh package lists.
dw_ensure_packages() {
    local missing=() p
    [ "$#" -gt 0 ] || set -- "${DW_PACKAGES[@]}"
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    command -v apt-get >/dev/null 2>&1 || dw_die "missing packages ${missing[*]} and no apt-get to install them"
    dw_log "installing ${missing[*]}"
    # policy-rc.d-less machines would start docker-registry's own service on :5000 at install;
    # we run our own registries, so stop a service the install just started.
    local had_registry_service=0 had_ssh_service=0
    [ -e /etc/init.d/docker-registry ] && had_registry_service=1
    [ -e /etc/init.d/ssh ] && had_ssh_service=1
    if ! dw_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/tmp/dockwright-apt.log 2>&1; then
        dw_log "apt-get install failed; refreshing package lists and retrying"
        dw_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>/tmp/dockwright-apt.log 2>&1 ||
            { cat /tmp/dockwright-apt.log >&2; dw_die "apt-get update failed"; }
        dw_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >>/tmp/dockwright-apt.log 2>&1 ||
            { cat /tmp/dockwright-apt.log >&2; dw_die "apt-get install ${missing[*]} failed"; }
    fi
    if [ "$had_registry_service" = 0 ] && [ -e /etc/init.d/docker-registry ]; then
        if dw_root /etc/init.d/docker-registry status >/dev/null 2>&1; then
            dw_log "stopping the docker-registry service the package install started"
            dw_root /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
        fi
    fi
    # Likewise openssh-server's own sshd on port 22: the tests run their own on loopback.
    if [ "$had_ssh_service" = 0 ] && [ -e /etc/init.d/ssh ]; then
        if dw_root /etc/init.d/ssh status >/dev/null 2>&1; then
            dw_log "stopping the ssh service the package install started"
            dw_root /etc/init.d/ssh stop >/dev/null 2>&1 || true
        fi
    fi
}

# Make sure a Docker daemon answers; start one if none does, waiting up to 60 s.
dw_docker_answers() { timeout 20 docker info >/dev/null 2>&1; }

dw_ensure_docker() {
    command -v docker >/dev/null 2>&1 || dw_die "the docker CLI is not installed"
    if dw_docker_answers; then
        return 0
    fi
    # A daemon that runs but no longer answers (seen after heavy container churn) is restarted.
    if pgrep -x dockerd >/dev/null 2>&1; then
        dw_log "dockerd runs but does not answer; restarting it"
        dw_root pkill -TERM -x dockerd || true
        sleep 10
        dw_root pkill -KILL -x dockerd || true
        sleep 2
    fi
    if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST#unix://}" = "$DOCKER_HOST" ]; then
        dw_die "DOCKER_HOST=$DOCKER_HOST does not answer and is not local; start that daemon first"
    fi
    dw_log "no Docker daemon answers; starting one"
    if command -v service >/dev/null 2>&1 && [ -e /etc/init.d/docker ]; then
        dw_root service docker start >/dev/null 2>&1 || true
    elif command -v systemctl >/dev/null 2>&1 && systemctl list-unit-files docker.service >/dev/null 2>&1; then
        dw_root systemctl start docker >/dev/null 2>&1 || true
    fi
    for _ in $(seq 1 20); do
        dw_docker_answers && return 0
        sleep 1
    done
    if command -v dockerd >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null 2>&1; then
        dw_log "starting dockerd in the background (log: /tmp/dockwright-dockerd.log)"
        # Detached (setsid, no inherited stdio) so it never holds the caller's pipes open.
        dw_root setsid dockerd </dev/null >/tmp/dockwright-dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 40); do
        dw_docker_answers && return 0
        sleep 1
    done
    tail -n 30 /tmp/dockwright-dockerd.log >&2 2>/dev/null || true
    dw_die "no Docker daemon answered within 60 s"
}

# Print "ID OWNER" for every object of a kind (container|volume|network|image) whose
# dockwright.dev/owner label starts with the given prefix.
dw_owned_objects() {
    local kind="$1" prefix="$2"
    case "$kind" in
        container)
            docker ps -a --filter label=dockwright.dev/owner \
                --format '{{.ID}} {{.Label "dockwright.dev/owner"}}' ;;
        volume)
            docker volume ls --filter label=dockwright.dev/owner \
                --format '{{.Name}} {{.Label "dockwright.dev/owner"}}' ;;
        network)
            docker network ls --filter label=dockwright.dev/owner \
                --format '{{.ID}} {{.Label "dockwright.dev/owner"}}' ;;
        image)
            local id
            for id in $(docker image ls -q --no-trunc --filter label=dockwright.dev/owner | sort -u); do
                printf '%s %s\n' "$id" \
                    "$(docker image inspect --format '{{index .Config.Labels "dockwright.dev/owner"}}' "$id")"
            done ;;
    esac | awk -v p="$prefix" 'index($2, p) == 1 { print $1 }'
}

# Remove every container, volume, network and image whose owner label starts with the prefix.
dw_remove_owned() {
    local prefix="$1" kind
    local -a ids
    for kind in container volume network image; do
        mapfile -t ids < <(dw_owned_objects "$kind" "$prefix")
        [ "${#ids[@]}" -gt 0 ] || continue
        dw_log "removing leftover ${kind}s owned by $prefix*: ${#ids[@]}"
        case "$kind" in
            container) docker rm -f -v "${ids[@]}" >/dev/null ;;
            volume) docker volume rm -f "${ids[@]}" >/dev/null ;;
            network) docker network rm "${ids[@]}" >/dev/null ;;
            image) docker image rm -f "${ids[@]}" >/dev/null ;;
        esac
    done
    return 0
}

# Wait until an HTTP URL answers with one of the given statuses (default 200), up to N seconds.
dw_wait_http() {
    local url="$1" want="${2:-200}" secs="${3:-30}" code
    for _ in $(seq 1 $((secs * 5))); do
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
        case " $want " in *" $code "*) return 0 ;; esac
        sleep 0.2
    done
    return 1
}

# Print the path of a Python that has Helm's Go SDK (PyPI helm-python-sdk, pinned: a new SDK,
# and so a new Helm, may render differently; bump it on purpose): $PYTHON (default python3)
# itself, installing the SDK there when missing, else a venv under target/ (for a Python whose
# packages pip may not touch, PEP 668).
DW_HELM_SDK_PIP="helm-python-sdk==0.2.2"
dw_helm_python() {
    local python="${PYTHON:-python3}" venv="$DW_ROOT/target/helm-sdk-venv"
    command -v "$python" >/dev/null 2>&1 || dw_die "$python not found (Helm's SDK runs from Python)"
    _dw_has_sdk() { "$1" -c 'import helm_python, sys; sys.exit(helm_python.__version__ != sys.argv[1])' "${DW_HELM_SDK_PIP#*==}" 2>/dev/null; }
    if _dw_has_sdk "$python"; then
        command -v "$python"
    elif [ -x "$venv/bin/python" ] && _dw_has_sdk "$venv/bin/python"; then
        echo "$venv/bin/python"
    else
        dw_log "installing $DW_HELM_SDK_PIP"
        if "$python" -m pip install --quiet --disable-pip-version-check "$DW_HELM_SDK_PIP" >/tmp/dockwright-pip.log 2>&1 &&
            _dw_has_sdk "$python"; then
            command -v "$python"
        else
            dw_log "pip install into $python failed (see /tmp/dockwright-pip.log); using a venv in $venv"
            "$python" -m venv "$venv" >&2 || dw_die "cannot create a venv with $python"
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$DW_HELM_SDK_PIP" >&2 ||
                dw_die "pip install $DW_HELM_SDK_PIP failed"
            echo "$venv/bin/python"
        fi
    fi
}
