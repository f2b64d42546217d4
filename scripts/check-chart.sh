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

# Pinned: a new SDK (and so a new Helm) may render differently; bump it on purpose.
HELM_SDK_PIP="helm-python-sdk==0.2.2"
PYTHON="${PYTHON:-python3}"

write=0
case "${1:-}" in
    --write) write=1 ;;
    "") ;;
    *) dw_die "usage: $0 [--write]" ;;
esac

command -v "$PYTHON" >/dev/null 2>&1 || dw_die "$PYTHON not found (the chart is rendered by Helm's SDK from Python)"

# The Python that has helm_python: $PYTHON itself, else a venv under target/ (for a Python
# whose packages pip may not touch, PEP 668).
venv="$DW_ROOT/target/helm-sdk-venv"
has_sdk() { "$1" -c 'import helm_python, sys; sys.exit(helm_python.__version__ != sys.argv[1])' "${HELM_SDK_PIP#*==}" 2>/dev/null; }
if has_sdk "$PYTHON"; then
    py="$PYTHON"
elif [ -x "$venv/bin/python" ] && has_sdk "$venv/bin/python"; then
    py="$venv/bin/python"
else
    dw_log "installing $HELM_SDK_PIP"
    if "$PYTHON" -m pip install --quiet --disable-pip-version-check "$HELM_SDK_PIP" >/tmp/dockwright-pip.log 2>&1 &&
        has_sdk "$PYTHON"; then
        py="$PYTHON"
    else
        dw_log "pip install into $PYTHON failed (see /tmp/dockwright-pip.log); using a venv in $venv"
        "$PYTHON" -m venv "$venv" || dw_die "cannot create a venv with $PYTHON"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$HELM_SDK_PIP" ||
            dw_die "pip install $HELM_SDK_PIP failed"
        py="$venv/bin/python"
    fi
fi

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
