"""Lints and renders charts/privint offline (Helm's own library, via helm-python-sdk) and
validates the rendered manifests against the Kubernetes schemas (kubernetes-validate).

Usage: python .ci/chart-check.py   (from the repository root, with both packages installed)
"""

import os
import subprocess
import sys
import tempfile

import helm_python
import kubernetes_validate
import yaml

CHART = "charts/privint"
KUBE_VERSION = "1.30"

BASE = {"jwt": {"hs256Secret": "privint-jwt"}, "replicaCount": 1}
CASES = {
    "minimal (one replica, SQLite in an emptyDir)": BASE,
    "production-like": {
        "replicaCount": 3,
        "database": {"existingSecret": "privint-db"},
        "jwt": {"jwksSecret": "privint-jwks"},
        "tls": {"secretName": "privint-tls", "requireClientCerts": True},
        "config": {"corsAllowedOrigins": ["https://admin.example.com"]},
        "autoscaling": {"enabled": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    },
}
MUST_FAIL = {
    "no JWT key": {"replicaCount": 1},
    "the default replicas without PostgreSQL": {"jwt": {"hs256Secret": "privint-jwt"}},
    "several replicas on SQLite": {**BASE, "replicaCount": 2},
    "a typo in values": {**BASE, "replicaCont": 2},
    "a bad duration": {**BASE, "config": {"shutdownDelay": "soon"}},
}


def render(values):
    chart = helm_python.Chart.load(CHART)
    return chart.render(values, name="privint", namespace="privint")


def main():
    failures = []
    for name, values in CASES.items():
        report = helm_python.lint(CHART, values, strict=True)
        if report["errors"]:
            failures.append(f"{name}: lint: {report}")
        manifests = render(values)
        documents = [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]
        kinds = sorted(doc["kind"] for doc in documents)
        print(f"{name}: {', '.join(kinds)}")
        for doc in documents:
            if doc["apiVersion"].startswith("monitoring.coreos.com"):
                continue  # A CRD: not in the Kubernetes schemas.
            try:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            except Exception as err:  # noqa: BLE001 - report every invalid manifest
                failures.append(f"{name}: {doc['kind']}: {err}")
        config = next(doc for doc in documents if doc["kind"] == "ConfigMap")["data"]["privint.toml"]
        with tempfile.NamedTemporaryFile("w", suffix=".toml") as file:
            file.write(config)
            file.flush()
            # The rendered config must be one the binary accepts.
            check = subprocess.run(
                [os.environ.get("PRIVINT_BIN", "target/debug/privint"), "--config", file.name, "dev-jwt", "--agency", "a"],
                capture_output=True, text=True,
            )
            if check.returncode != 0:
                failures.append(f"{name}: privint rejects the rendered config: {check.stderr}")
    for name, values in MUST_FAIL.items():
        try:
            render(values)
        except helm_python.HelmError:
            print(f"{name}: refused, as it should be")
            continue
        failures.append(f"{name}: rendered, but should have been refused")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print("chart: ok")


if __name__ == "__main__":
    main()
