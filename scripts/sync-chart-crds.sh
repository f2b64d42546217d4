#!/usr/bin/env bash
# Copy the generated CRDs (crds/dockwright.yaml, written by `dockwright crd`) into the chart
# (charts/dockwright/crds/). The chart's copy is never edited by hand; scripts/check-chart.sh
# fails when the two differ, and `scripts/check-chart.sh --write` runs this script.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src="$DW_ROOT/crds/dockwright.yaml"
dst="$DW_ROOT/charts/dockwright/crds/dockwright.yaml"
[ -f "$src" ] || dw_die "$src is missing: generate it with \`cargo run -q -- crd > crds/dockwright.yaml\`"
if cmp -s "$src" "$dst"; then
    dw_log "chart CRDs up to date"
    exit 0
fi
mkdir -p "$(dirname "$dst")"
cp "$src" "$dst"
dw_log "copied crds/dockwright.yaml to charts/dockwright/crds/dockwright.yaml"
