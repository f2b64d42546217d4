#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of the manifest front door (fuzz/fuzz_targets/manifest.rs)
# with cargo-fuzz and libFuzzer. Needs the nightly toolchain (sanitizer flags); installs
# cargo-fuzz from crates.io when missing. Without nightly it says so and exits 0: the same
# check runs on stable, at scale, in tests/fuzz_manifests.rs.
#   scripts/fuzz.sh [SECONDS]   (default 60; the run also stops at the first crash)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: no nightly toolchain; skipped (tests/fuzz_manifests.rs covers stable)"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
# Seeds: the examples and the corpus below; libFuzzer adds what it finds (git-ignored).
mkdir -p corpus/manifest
for f in ../examples/*/*.yaml; do
    cp "$f" "corpus/manifest/example-$(basename "$(dirname "$f")")-$(basename "$f")"
done
log="${TMPDIR:-/tmp}/dockwright-fuzz.log"
set +e
cargo +nightly fuzz run manifest corpus/manifest seeds -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=4096 >"$log" 2>&1
rc=$?
set -e
grep -E '^(Done [0-9]+ runs|==[0-9]+==|SUMMARY)|panicked' "$log" | tail -20 || true
runs="$(grep -Eo '^Done [0-9]+ runs' "$log" | tail -1 || true)"
echo "fuzz: manifest target, ${seconds}s: ${runs:-no summary} (exit $rc; log $log)"
exit "$rc"
