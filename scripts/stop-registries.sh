#!/usr/bin/env bash
# Stop the test registries that scripts/start-registries.sh started (by their pid files).
# Their storage stays; pass --purge to delete the whole state dir as well.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

for name in open auth; do
    pidfile="$DW_TEST_STATE/registry-$name/registry.pid"
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        dw_log "stopping registry $name (pid $(cat "$pidfile"))"
        kill "$(cat "$pidfile")"
    fi
    rm -f "$pidfile"
done
if [ "${1:-}" = "--purge" ]; then
    rm -rf "$DW_TEST_STATE"
fi
