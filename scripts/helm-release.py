#!/usr/bin/env python3
"""Install, upgrade or uninstall a release of charts/dockwright with Helm's own Go SDK (PyPI
helm-python-sdk), against the cluster KUBECONFIG names: what `helm install/upgrade/uninstall`
do, for machines without the helm binary. The tests drive the chart through it.

Usage:
  helm-release.py install RELEASE --namespace NS [--values FILE] [--wait SECONDS]
  helm-release.py upgrade RELEASE --namespace NS [--values FILE] [--wait SECONDS]
  helm-release.py uninstall RELEASE --namespace NS [--wait SECONDS]

--values: a JSON or YAML file of values (YAML parsed by Helm's own parser). --wait: wait up to
that many seconds for the release's resources to be ready (Helm's "watcher" strategy).
Prints the release's name, namespace, revision and status as one JSON line; exit 1 with Helm's
error on a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

try:
    import helm_python as helm
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("helm-release.py: helm_python is missing: pip install helm-python-sdk (scripts/lib.sh dw_helm_python does)")

CHART = Path(__file__).resolve().parent.parent / "charts" / "dockwright"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["install", "upgrade", "uninstall"])
    parser.add_argument("release")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--values", type=Path)
    parser.add_argument("--wait", type=int)
    parser.add_argument("--chart", type=Path, default=CHART)
    args = parser.parse_args()

    values = None
    if args.values is not None:
        text = args.values.read_text()
        values = json.loads(text) if args.values.suffix == ".json" else helm.values_from_yaml(text)

    kubeconfig = os.environ.get("KUBECONFIG")
    config = helm.Config(kubeconfig_path=kubeconfig, namespace=args.namespace)
    wait = "watcher" if args.wait else None
    try:
        if args.action == "install":
            release = config.install(
                helm.Chart.load(args.chart), args.release, values,
                namespace=args.namespace, create_namespace=True, wait=wait, timeout=args.wait,
            )
        elif args.action == "upgrade":
            release = config.upgrade(
                helm.Chart.load(args.chart), args.release, values,
                namespace=args.namespace, wait=wait, timeout=args.wait,
            )
        else:
            release = config.uninstall(args.release, wait=wait, timeout=args.wait, ignore_not_found=True)
            release = release.get("release") or {}
    except helm.HelmError as error:
        print(f"helm {args.action} {args.release}: {error}", file=sys.stderr)
        return 1
    info = release.get("info") or {}
    print(json.dumps({
        "name": release.get("name", args.release),
        "namespace": release.get("namespace", args.namespace),
        "revision": release.get("version"),
        "status": info.get("status") if isinstance(info, dict) else info,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
