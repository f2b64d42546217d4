#!/usr/bin/env bash
# Start the two loopback registries the tests push to and pull from (Debian's docker-registry,
# the CNCF distribution registry):
#   127.0.0.1:5000  open
#   127.0.0.1:5001  htpasswd auth, user dwtest, a password generated once per state dir
# State lives in $DOCKWRIGHT_TEST_STATE (default /tmp/dockwright-test): registry-{open,auth}/
# (storage, config, log, pid file) and credentials/config.json (Docker config format) with the credentials. It writes
# $DOCKWRIGHT_TEST_STATE/env, which `source` turns into the DOCKWRIGHT_TEST_* variables, and
# prints the same lines. Idempotent: registries that already answer are left running.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

OPEN_ADDR=127.0.0.1:5000
AUTH_ADDR=127.0.0.1:5001
AUTH_USER=dwtest

dw_ensure_packages docker-registry apache2-utils curl
command -v docker-registry >/dev/null 2>&1 || dw_die "docker-registry is not on PATH"

mkdir -p "$DW_TEST_STATE/credentials"
chmod 700 "$DW_TEST_STATE/credentials"

# Credentials: generated once, then reused so a running registry and the files agree.
pwfile="$DW_TEST_STATE/credentials/password"
if [ ! -s "$pwfile" ]; then
    head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$pwfile"
    rm -f "$DW_TEST_STATE/credentials/htpasswd"
fi
printf '%s' "$AUTH_USER" >"$DW_TEST_STATE/credentials/username"
password="$(cat "$pwfile")"
if [ ! -s "$DW_TEST_STATE/credentials/htpasswd" ]; then
    htpasswd -Bbn "$AUTH_USER" "$password" >"$DW_TEST_STATE/credentials/htpasswd"
fi
auth_b64="$(printf '%s:%s' "$AUTH_USER" "$password" | base64 | tr -d '\n')"
cat >"$DW_TEST_STATE/credentials/config.json" <<JSON
{
  "auths": {
    "$AUTH_ADDR": { "auth": "$auth_b64" }
  }
}
JSON
chmod 600 "$DW_TEST_STATE/credentials/"*

# write_config NAME ADDR [htpasswd]: the registry's YAML config.
write_config() {
    local name="$1" addr="$2" auth="${3:-}"
    mkdir -p "$DW_TEST_STATE/registry-$name/storage"
    {
        cat <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DW_TEST_STATE/registry-$name/storage
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $addr
  secret: dockwright-test-$name
YAML
        if [ -n "$auth" ]; then
            cat <<YAML
auth:
  htpasswd:
    realm: dockwright-test
    path: $DW_TEST_STATE/credentials/htpasswd
YAML
        fi
    } >"$DW_TEST_STATE/registry-$name/config.yml"
}

# start NAME ADDR WANT_STATUS [htpasswd]: start one registry unless it already answers.
start() {
    local name="$1" addr="$2" want="$3" auth="${4:-}" pidfile="$DW_TEST_STATE/registry-$1/registry.pid"
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$addr/v2/" || true)"
    if [ "$code" = "$want" ]; then
        dw_log "registry $name on $addr already answers ($code)"
        return 0
    fi
    if [ "$code" != 000 ]; then
        dw_die "$addr answers $code on /v2/ (want $want): something else holds the port"
    fi
    # A stale process of ours that no longer answers: end it by its pid file.
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        sleep 1
    fi
    write_config "$name" "$addr" "$auth"
    dw_log "starting registry $name on $addr (log: $DW_TEST_STATE/registry-$name/registry.log)"
    # Detached (setsid, no inherited stdio) so it never holds the caller's pipes open.
    setsid docker-registry serve "$DW_TEST_STATE/registry-$name/config.yml" \
        </dev/null >"$DW_TEST_STATE/registry-$name/registry.log" 2>&1 &
    echo $! >"$pidfile"
    if ! dw_wait_http "http://$addr/v2/" "$want" 30; then
        tail -n 20 "$DW_TEST_STATE/registry-$name/registry.log" >&2 || true
        dw_die "registry $name did not answer on http://$addr/v2/"
    fi
}

start open "$OPEN_ADDR" 200
start auth "$AUTH_ADDR" 401 htpasswd

# The auth registry must accept the credentials we hand out. One of ours started with an older
# htpasswd is restarted once; anything else is an error.
creds_ok() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -u "$AUTH_USER:$password" \
        "http://$AUTH_ADDR/v2/" || true)" = 200 ]
}
if ! creds_ok; then
    pidfile="$DW_TEST_STATE/registry-auth/registry.pid"
    if ! { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
        dw_die "the registry on $AUTH_ADDR is not ours and rejects the test credentials"
    fi
    dw_log "restarting registry auth: it rejects the current test credentials"
    kill "$(cat "$pidfile")"
    for _ in $(seq 1 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    start auth "$AUTH_ADDR" 401 htpasswd
    creds_ok || dw_die "registry on $AUTH_ADDR rejects the test credentials"
fi

cat >"$DW_TEST_STATE/env" <<ENV
export DOCKWRIGHT_TEST_REGISTRY=$OPEN_ADDR
export DOCKWRIGHT_TEST_AUTH_REGISTRY=$AUTH_ADDR
export DOCKWRIGHT_TEST_AUTH_FILE=$DW_TEST_STATE/credentials/config.json
export DOCKWRIGHT_TEST_AUTH_USER=$AUTH_USER
export DOCKWRIGHT_TEST_AUTH_PASSWORD_FILE=$DW_TEST_STATE/credentials/password
ENV
cat "$DW_TEST_STATE/env"
