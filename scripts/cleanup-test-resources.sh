#!/usr/bin/env bash
# Remove what tests left behind: containers, volumes, networks and images whose
# dockwright.dev/owner label starts with the prefix (default `dwtest-`, the prefix every
# test owner carries; see tests/common/owner.rs). Never touches anything else.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

dw_ensure_docker
dw_remove_owned "${1:-dwtest-}"
