#!/usr/bin/env bash
# Run dockwright on examples/: builds the image the examples use (nothing can be pulled here),
# starts the loopback registry examples/registry pushes to, then converges every manifest under
# examples/ once. Extra arguments go to `apply` (e.g. `scripts/run-examples.sh --dry-run`).
# Each examples/<name>/README.md says what to look at; `dockwright delete -f examples/` removes
# the containers again.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$DW_ROOT"

dw_ensure_docker
"$DW_ROOT/scripts/build-test-image.sh"
"$DW_ROOT/scripts/start-registries.sh" >/dev/null
cargo run --release -- apply -f examples/ "$@"
