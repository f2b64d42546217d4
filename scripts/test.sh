#!/usr/bin/env bash
# The test command: prepares what the tests need (a Docker daemon, the Debian packages, the
# test image, the loopback registries, the test Kubernetes control plane) — each step
# idempotent — then runs
# `cargo test --no-fail-fast --lib --bins --tests` (benches are run by `cargo bench`, not here). Extra arguments go to cargo test (e.g. `scripts/test.sh --test infra`).
# Ends with one summary line, `tests: N passed, N failed, N skipped`, summed over all test binaries.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$DW_ROOT"

dw_ensure_docker
dw_ensure_packages
"$DW_ROOT/scripts/build-test-image.sh"
"$DW_ROOT/scripts/start-registries.sh" >/dev/null
# shellcheck disable=SC1091
. "$DW_TEST_STATE/env"
# The real Kubernetes control plane (built once per machine, 10-15 minutes the first time) and
# the agent image its DaemonSet runs (tests/kube_cluster.rs).
"$DW_ROOT/scripts/start-kube.sh" >/dev/null
# shellcheck disable=SC1091
. "$DW_TEST_STATE/kube/env"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --no-fail-fast --lib --bins --tests "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

# Sum libtest's "test result: ok. 3 passed; 0 failed; 1 ignored; ..." lines.
summary="$(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/)  p += $(i-1)
            if ($(i) ~ /^failed;?$/)  f += $(i-1)
            if ($(i) ~ /^ignored;?$/) s += $(i-1)
        }
        n++
    } END { printf "%d passed, %d failed, %d skipped", p, f, s }' "$log")"
echo
if [ "$rc" = 0 ]; then
    echo "tests: $summary"
else
    echo "tests: $summary"
    echo "scripts/test.sh: cargo test failed (exit $rc)" >&2
fi
exit "$rc"
