#!/usr/bin/env bash
# Check the Helm chart and the plain manifests rendered from it, for real and offline:
#   - the chart's CRDs are a copy of the generated crds/dockwright.yaml;
#   - Helm's own Go SDK (PyPI helm-python-sdk, installed here when missing) lints the chart
#     and renders it with the default and the CI values (scripts/render-chart.py), into
#     target/chart-render/{default,nondefault}.yaml, which `cargo test --test chart`
#     deserialises into k8s-openapi types;
#   - deploy/kubernetes/dockwright.yaml is exactly the default render (CI fails on drift).
# --write: sync the chart's CRDs and regenerate deploy/kubernetes/dockwright.yaml instead of
# failing on a difference.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$DW_ROOT"

write=0
case "${1:-}" in
    --write) write=1 ;;
    "") ;;
    *) dw_die "usage: $0 [--write]" ;;
esac

py="$(dw_helm_python)"

crds_src=crds/dockwright.yaml
crds_chart=charts/dockwright/crds/dockwright.yaml
deploy=deploy/kubernetes/dockwright.yaml

if [ "$write" = 1 ]; then
    scripts/sync-chart-crds.sh
elif ! cmp -s "$crds_src" "$crds_chart"; then
    diff -u "$crds_chart" "$crds_src" | head -n 40 >&2 || true
    dw_die "$crds_chart differs from $crds_src: run scripts/sync-chart-crds.sh (or scripts/check-chart.sh --write)"
fi

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
"$py" scripts/render-chart.py --render-dir target/chart-render "$out"

if [ "$write" = 1 ]; then
    mkdir -p "$(dirname "$deploy")"
    cp "$out" "$deploy"
    dw_log "wrote $deploy"
elif ! diff -u "$deploy" "$out"; then
    dw_die "$deploy differs from the chart's default render (above): run scripts/check-chart.sh --write and commit"
fi
dw_log "chart ok: lint, renders and $deploy agree"
