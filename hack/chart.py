#!/usr/bin/env python3
"""Tooling for the Helm chart charts/ferrolb, on the real Helm engine (Helm v4 SDK from PyPI).

    python3 hack/chart.py render [--values FILE]... [--name N] [--namespace NS]
    python3 hack/chart.py lint            lint with the defaults and every charts/ferrolb/ci/*.yaml
    python3 hack/chart.py manifest        write config/manifests/ferrolb-native.yaml
    python3 hack/chart.py check-manifest  exit 1 when that file is stale
    python3 hack/chart.py sync-crds       copy config/crd/*.yaml into charts/ferrolb/templates/crds/
    python3 hack/chart.py check-crds      exit 1 when the chart's CRDs differ from config/crd/
    python3 hack/chart.py check-schema    bad values must be refused with a message naming the key
    python3 hack/chart.py package [--version V] [--app-version V] [--destination DIR]
                                          the chart as a .tgz (what `helm package` writes), then
                                          loaded, linted and rendered back from that archive
    python3 hack/chart.py push FILE oci://REGISTRY/PATH
                                          publish a packaged chart as an OCI artifact (login
                                          from HELM_REGISTRY_USERNAME / HELM_REGISTRY_PASSWORD)
    python3 hack/chart.py check-upgrade --kubeconfig FILE
                                          install, upgrade, uninstall, reinstall against a (test)
                                          cluster: the gossip key survives, kept objects stay

Needs only `pip install helm-python-sdk` (no helm binary, no cluster, no PyYAML: YAML is parsed
by the Helm library itself). Output is deterministic except for the gossip key, which a plain
render generates afresh (see `manifest` for how the native manifest avoids it).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "ferrolb"
CRD_SOURCE = ROOT / "config" / "crd"
CRD_TEMPLATES = CHART / "templates" / "crds"
MANIFEST = ROOT / "config" / "manifests" / "ferrolb-native.yaml"
RELEASE = "ferrolb"
NAMESPACE = "ferrolb-system"

try:
    import helm_python as helm
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("hack/chart.py needs the Helm engine for Python: pip install helm-python-sdk")

# Helm's install order (pkg/release/util/kind_sorter.go), so the manifest applies in an order
# that works: namespaces and CRDs before what uses them, workloads last.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]

DOC_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)


class Doc:
    """One rendered object: its YAML text as Helm produced it and the parsed object."""

    def __init__(self, source: str, text: str, obj: dict[str, Any]) -> None:
        self.source = source
        self.text = text
        self.obj = obj

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.obj.get("metadata", {}).get("name", ""))

    def sort_key(self) -> tuple[int, str, str, str]:
        order = INSTALL_ORDER.index(self.kind) if self.kind in INSTALL_ORDER else len(INSTALL_ORDER)
        return (order, self.kind, self.name, self.source)


def load_values(files: list[str]) -> dict[str, Any]:
    """Merges values files in order, as `helm -f a -f b` does (later files win, maps merge)."""
    merged: dict[str, Any] = {}
    for f in files:
        merge(merged, helm.values_from_yaml(Path(f).read_text()) or {})
    return merged


def merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def render(values: dict[str, Any], name: str = RELEASE, namespace: str = NAMESPACE) -> list[Doc]:
    """Renders the chart and returns its objects in install order."""
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name=name, namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(files.items()):
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for part in DOC_SEPARATOR.split(text):
            obj = helm.values_from_yaml(part) if part.strip() else None
            if not obj:
                continue  # empty, or only comments
            docs.append(Doc(path, part.strip("\n"), obj))
    docs.sort(key=Doc.sort_key)
    return docs


def to_yaml(docs: list[Doc]) -> str:
    return "".join(f"---\n# Source: {d.source}\n{d.text}\n" for d in docs)


# ---------------------------------------------------------------- render, lint


def cmd_render(args: argparse.Namespace) -> int:
    sys.stdout.write(to_yaml(render(load_values(args.values), args.name, args.namespace)))
    return 0


def value_sets() -> list[tuple[str, dict[str, Any]]]:
    sets: list[tuple[str, dict[str, Any]]] = [("defaults", {})]
    for f in sorted((CHART / "ci").glob("*.yaml")):
        sets.append((str(f.relative_to(ROOT)), load_values([str(f)])))
    return sets


def cmd_lint(_: argparse.Namespace) -> int:
    failed = False
    for label, values in value_sets():
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        for m in report["messages"]:
            level = {1: "INFO", 2: "WARNING", 3: "ERROR"}.get(m["severity"], "UNKNOWN")
            print(f"{label}: [{level}] {m['path']}: {m['error'].strip()}")
        if problems or report["errors"]:
            failed = True
        else:
            print(f"{label}: lint passed")
    return 1 if failed else 0


# ---------------------------------------------------------------- native manifest

MANIFEST_HEADER = f"""\
# ferrolb, plain manifests: `kubectl apply -f config/manifests/ferrolb-native.yaml`.
#
# Generated by `python3 hack/chart.py manifest` from charts/ferrolb with its default values
# (release "{RELEASE}", namespace "{NAMESPACE}"). Do not edit: change the chart and regenerate;
# a test fails when this file is stale. For any other setting, install the chart with Helm.
#
# One step is yours: the gossip key. A generated key cannot live in a file everyone downloads
# (it would be the same key in every cluster, and the file would change on every render), so this
# manifest does not contain the Secret. Create it once, before or after applying; the speakers
# wait in ContainerCreating until it exists (the same step MetalLB's manifests asked for with its
# memberlist Secret):
#
#   kubectl -n {NAMESPACE} create secret generic {RELEASE}-gossip --from-literal=keys="$(openssl rand -base64 48)"
#
# The key is never rotated by re-applying this file. To rotate, put two lines in `keys` (new key
# second), then swap them, then remove the old one; each step rolls out to every speaker before
# the next.
#
# The namespace is labelled pod-security `privileged`: the speaker needs the host network and
# CAP_NET_RAW, which the `baseline` level forbids.
"""

NAMESPACE_DOC = f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    pod-security.kubernetes.io/enforce: privileged
    pod-security.kubernetes.io/audit: privileged
    pod-security.kubernetes.io/warn: privileged"""

# The native manifest renders the defaults, except that the Secret with the generated key is left
# to the operator (see MANIFEST_HEADER).
MANIFEST_VALUES: dict[str, Any] = {"gossip": {"createSecret": False}}


def manifest_text() -> str:
    namespace = Doc("(hack/chart.py)", NAMESPACE_DOC, helm.values_from_yaml(NAMESPACE_DOC))
    docs = [namespace] + render(MANIFEST_VALUES)
    return MANIFEST_HEADER + to_yaml(docs)


def cmd_manifest(_: argparse.Namespace) -> int:
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    MANIFEST.write_text(manifest_text())
    print(f"wrote {MANIFEST.relative_to(ROOT)}")
    return 0


def report_stale(path: Path, want: str, fix: str) -> int:
    have = path.read_text() if path.exists() else ""
    if have == want:
        print(f"{path.relative_to(ROOT)} is up to date")
        return 0
    diff = list(
        difflib.unified_diff(
            have.splitlines(), want.splitlines(), "committed", "generated", lineterm="", n=1
        )
    )
    print("\n".join(diff[:60]) + ("\n..." if len(diff) > 60 else ""))
    print(f"{path.relative_to(ROOT)} is stale: run `{fix}` and commit the result", file=sys.stderr)
    return 1


def cmd_check_manifest(_: argparse.Namespace) -> int:
    return report_stale(MANIFEST, manifest_text(), "python3 hack/chart.py manifest")


# ---------------------------------------------------------------- CRDs

CRD_METADATA = """\
  labels:
    {{- include "ferrolb.crdLabels" . | nindent 4 }}
  {{- if .Values.crds.keep }}
  annotations:
    # `helm uninstall` leaves the CRD, and with it every pool and advertisement.
    helm.sh/resource-policy: keep
  {{- end }}
"""


def escape_template(text: str) -> str:
    """Makes YAML text literal inside a Go template (descriptions may contain `{{`)."""
    return re.sub(r"\{\{|\}\}", lambda m: '{{ "' + m.group(0) + '" }}', text)


def crd_template(source: Path) -> str:
    """The chart template of one generated CRD: the same YAML, guarded by crds.enabled, with the
    chart's labels and the keep policy added to its metadata."""
    lines = source.read_text().splitlines(keepends=True)
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    body = "".join(lines)
    match = re.search(r"^metadata:\n  name: [^\n]+\n", body, re.MULTILINE)
    if not match or re.search(r"^  (labels|annotations):", body, re.MULTILINE):
        raise SystemExit(
            f"{source}: expected `metadata:` with `name:` first and no labels or annotations"
        )
    body = escape_template(body)
    match = re.search(r"^metadata:\n  name: [^\n]+\n", body, re.MULTILINE)
    assert match
    body = body[: match.end()] + CRD_METADATA + body[match.end() :]
    return (
        "{{- if .Values.crds.enabled }}\n"
        f"# Generated by `python3 hack/chart.py sync-crds` from config/crd/{source.name}. Do not edit.\n"
        f"{body}"
        "{{- end }}\n"
    )


def crd_sources() -> list[Path]:
    return sorted(CRD_SOURCE.glob("*.yaml"))


def cmd_sync_crds(_: argparse.Namespace) -> int:
    CRD_TEMPLATES.mkdir(parents=True, exist_ok=True)
    wanted = {s.name for s in crd_sources()}
    for old in CRD_TEMPLATES.glob("*.yaml"):
        if old.name not in wanted:
            old.unlink()
            print(f"removed {old.relative_to(ROOT)}")
    for source in crd_sources():
        target = CRD_TEMPLATES / source.name
        target.write_text(crd_template(source))
        print(f"wrote {target.relative_to(ROOT)}")
    return 0


def strip_chart_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = dict(obj.get("metadata", {}))
    meta.pop("labels", None)
    meta.pop("annotations", None)
    return {**obj, "metadata": meta}


def cmd_check_crds(_: argparse.Namespace) -> int:
    failed = 0
    fix = "python3 hack/chart.py sync-crds"
    sources = crd_sources()
    if not sources:
        print("config/crd/ holds no CRD: run `cargo run -p ferrolb-api --bin crdgen`", file=sys.stderr)
        return 1
    # 1. The template files are exactly what sync-crds writes.
    extra = {t.name for t in CRD_TEMPLATES.glob("*.yaml")} - {s.name for s in sources}
    for name in sorted(extra):
        print(f"charts/ferrolb/templates/crds/{name} has no config/crd/ source: run `{fix}`", file=sys.stderr)
        failed = 1
    for source in sources:
        failed |= report_stale(CRD_TEMPLATES / source.name, crd_template(source), fix)
    # 2. What the chart renders is the generated CRD, plus labels and the keep policy only.
    rendered = {
        d.name: d.obj
        for d in render({"crds": {"enabled": True, "keep": True}})
        if d.kind == "CustomResourceDefinition"
    }
    for source in sources:
        want = helm.values_from_yaml(source.read_text())
        name = want["metadata"]["name"]
        have = rendered.pop(name, None)
        if have is None:
            print(f"the chart renders no CRD {name} (from config/crd/{source.name})", file=sys.stderr)
            failed = 1
        elif strip_chart_metadata(have) != want:
            print(f"the chart's CRD {name} differs from config/crd/{source.name}: run `{fix}`", file=sys.stderr)
            failed = 1
        elif have["metadata"].get("annotations", {}).get("helm.sh/resource-policy") != "keep":
            print(f"the chart's CRD {name} lacks helm.sh/resource-policy: keep with crds.keep=true", file=sys.stderr)
            failed = 1
    for name in sorted(rendered):
        print(f"the chart renders CRD {name}, which config/crd/ does not define", file=sys.stderr)
        failed = 1
    if not failed:
        print(f"chart CRDs match config/crd/ ({len(sources)} CRDs)")
    return failed


# ---------------------------------------------------------------- schema and guards

# Values the chart must refuse, with the text the refusal must contain (the key's path). The
# first group is caught by values.schema.json, the second by `fail` guards in _helpers.tpl.
BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"controller": {"logLevel": "verbose"}}, "/controller/logLevel"),
    ({"speaker": {"logFormat": "xml"}}, "/speaker/logFormat"),
    ({"speaker": {"conflictPolicy": "ignore"}}, "/speaker/conflictPolicy"),
    ({"speaker": {"refreshInterval": "30 seconds"}}, "/speaker/refreshInterval"),
    ({"speaker": {"shutdownGrace": "1m"}}, "/speaker/shutdownGrace"),
    ({"speaker": {"interfaces": {"exclude": "lo"}}}, "/speaker/interfaces/exclude"),
    ({"speaker": {"interfaces": {"include": ["eth 0"]}}}, "/speaker/interfaces/include/0"),
    ({"speaker": {"interfacs": {"include": ["eth0"]}}}, "interfacs"),
    ({"gossip": {"port": 70000}}, "/gossip/port"),
    ({"gossip": {"secretName": "Not_A_Name"}}, "/gossip/secretName"),
    ({"controller": {"replicas": 0}}, "/controller/replicas"),
    ({"controller": {"image": {"pullPolicy": "Sometimes"}}}, "/controller/image/pullPolicy"),
    ({"controller": {"image": {"digest": "latest"}}}, "/controller/image/digest"),
    ({"controller": {"extraArgs": "--log-format=json"}}, "/controller/extraArgs"),
    ({"controller": {"metrics": {"port": "7472"}}}, "/controller/metrics/port"),
    ({"crds": {"enabled": "yes"}}, "/crds/enabled"),
    ({"crds": {"keepp": True}}, "keepp"),
    ({"loadBalancerClass": "Not A Class"}, "/loadBalancerClass"),
    ({"prometheus": {"serviceMonitor": {"interval": "30"}}}, "/prometheus/serviceMonitor/interval"),
    (
        {"prometheus": {"prometheusRule": {"alerts": {"poolUsage": {"thresholds": [{"percent": 150, "severity": "warning"}]}}}}},
        "/prometheus/prometheusRule/alerts/poolUsage/thresholds/0/percent",
    ),
    ({"prometheus": {"prometheusRule": {"alerts": {"ipConflict": {"severity": "urgent"}}}}}, "/prometheus/prometheusRule/alerts/ipConflict/severity"),
    ({"grafana": {"dashboard": {"labels": {"grafana_dashboard": 1}}}}, "/grafana/dashboard/labels/grafana_dashboard"),
    ({"networkPolicy": {"enabled": True, "metricsFrom": {"podSelector": {}}}}, "/networkPolicy/metricsFrom"),
    # `fail` guards: combinations a schema cannot express.
    ({"controller": {"leaderElection": False}}, "controller.leaderElection"),
    ({"controller": {"replicas": 1}}, "controller.podDisruptionBudget.minAvailable"),
    ({"speaker": {"metrics": {"port": 7946}}}, "speaker.metrics.port"),
    ({"controller": {"metrics": {"bindAddress": ""}}}, "controller.metrics.bindAddress"),
    ({"speaker": {"interfaces": {"include": ["eth0", "lo"]}}}, "speaker.interfaces"),
]


def cmd_check_schema(_: argparse.Namespace) -> int:
    failed = 0
    for values, expected in BAD_VALUES:
        try:
            render(values)
        except helm.HelmError as e:
            message = str(e).strip()
            if expected in message:
                first = next(
                    (line.strip() for line in message.splitlines() if expected in line),
                    message.splitlines()[0],
                )
                print(f"refused {expected}: {first}")
            else:
                print(f"refused {values} but the message does not name {expected!r}:\n{message}", file=sys.stderr)
                failed = 1
        else:
            print(f"ACCEPTED bad values {values} (expected a refusal naming {expected!r})", file=sys.stderr)
            failed = 1
    if not failed:
        print(f"all {len(BAD_VALUES)} bad value sets were refused with a message naming the key")
    return failed


# ---------------------------------------------------------------- release life cycle


def secret_key(manifest: str) -> str:
    for part in DOC_SEPARATOR.split(manifest):
        obj = helm.values_from_yaml(part) if part.strip() else None
        if obj and obj.get("kind") == "Secret" and "keys" in obj.get("data", {}):
            return str(obj["data"]["keys"])
    raise SystemExit("the release manifest holds no gossip Secret with a `keys` entry")


def cmd_check_upgrade(args: argparse.Namespace) -> int:
    """Runs a release through install, upgrade, uninstall and reinstall with the real Helm
    actions. Release history lives in memory (the test API server speaks JSON only, and Helm's
    Secret storage writes protobuf), so the whole cycle runs in this one process."""
    cfg = helm.Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace, storage_driver="memory")
    chart = str(CHART)
    failed = 0

    def expect(ok: bool, what: str) -> None:
        nonlocal failed
        print(("ok: " if ok else "FAILED: ") + what, file=sys.stdout if ok else sys.stderr)
        failed |= 0 if ok else 1

    first = cfg.install(chart, RELEASE, {}, namespace=args.namespace, create_namespace=True, timeout=60)
    key = secret_key(first["manifest"])
    expect(first["status"] == "deployed", f"install: revision {first['revision']} {first['status']}")
    upgraded = cfg.upgrade(chart, RELEASE, {"speaker": {"logLevel": "debug"}}, namespace=args.namespace, timeout=60)
    expect(upgraded["revision"] == 2, f"upgrade: revision {upgraded['revision']} {upgraded['status']}")
    expect(secret_key(upgraded["manifest"]) == key, "upgrade keeps the gossip key (read back with lookup)")
    gone = cfg.uninstall(RELEASE, timeout=60)
    info = str(gone.get("info", ""))
    kept = sorted(re.findall(r"^\[(\w+)\] (\S+)$", info, re.MULTILINE))
    want = sorted([("Secret", f"{RELEASE}-gossip")] + [
        ("CustomResourceDefinition", helm.values_from_yaml(s.read_text())["metadata"]["name"]) for s in crd_sources()
    ])
    expect(kept == want, f"uninstall keeps exactly the CRDs and the gossip Secret: {kept}")
    again = cfg.install(chart, RELEASE, {}, namespace=args.namespace, timeout=60)
    expect(secret_key(again["manifest"]) == key, "a reinstall adopts the kept Secret and its key")
    cfg.upgrade(chart, RELEASE, {"crds": {"keep": False}}, namespace=args.namespace, timeout=60)
    gone = cfg.uninstall(RELEASE, timeout=60)
    kept = sorted(re.findall(r"^\[(\w+)\] (\S+)$", str(gone.get("info", "")), re.MULTILINE))
    expect(kept == [("Secret", f"{RELEASE}-gossip")], f"with crds.keep=false, uninstall keeps only the gossip Secret: {kept}")
    print(f"gossip key: {key}")
    return failed


def cmd_package(args: argparse.Namespace) -> int:
    args.destination.mkdir(parents=True, exist_ok=True)
    archive = Path(helm.package(CHART, destination=args.destination, version=args.version, app_version=args.app_version))
    # Check what ships, not the source tree: the archive loads, lints and renders images of
    # the appVersion it was packaged with.
    chart = helm.Chart.load_archive(archive.read_bytes())
    meta = chart.metadata
    app_version = meta["appVersion"]
    findings = helm.lint(archive)
    # Helm's severities: 1 info, 2 warning, 3 error.
    errors = list(findings.get("errors") or []) + [m for m in findings.get("messages", []) if m.get("severity", 0) >= 3]
    if errors:
        print(f"{archive}: lint errors: {errors}", file=sys.stderr)
        return 1
    rendered = chart.render({}, name=RELEASE, namespace=NAMESPACE)
    text = "\n".join(str(v) for v in rendered.values())
    for component in ("controller", "speaker"):
        want = f"ghcr.io/ferrolb/ferrolb-{component}:{app_version}"
        if want not in text:
            print(f"{archive}: the rendered chart does not pull {want}", file=sys.stderr)
            return 1
    print(f"chart {archive} version={meta['version']} appVersion={app_version}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    import os

    client = helm.RegistryClient()
    user, password = os.environ.get("HELM_REGISTRY_USERNAME"), os.environ.get("HELM_REGISTRY_PASSWORD")
    if user and password:
        client.login(args.remote.removeprefix("oci://").split("/")[0], user, password)
    result = helm.push(args.archive, args.remote, client=client)
    print(f"pushed {args.archive} to {args.remote}: {result.get('ref', result)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print the rendered chart as multi-document YAML")
    r.add_argument("--values", "-f", action="append", default=[], metavar="FILE")
    r.add_argument("--name", default=RELEASE, help="release name")
    r.add_argument("--namespace", "-n", default=NAMESPACE)
    r.set_defaults(func=cmd_render)
    for name, func, text in [
        ("lint", cmd_lint, "lint with the defaults and every ci/*.yaml value set"),
        ("manifest", cmd_manifest, "write config/manifests/ferrolb-native.yaml"),
        ("check-manifest", cmd_check_manifest, "fail when the native manifest is stale"),
        ("sync-crds", cmd_sync_crds, "copy config/crd/ into the chart's templates"),
        ("check-crds", cmd_check_crds, "fail when the chart's CRDs differ from config/crd/"),
        ("check-schema", cmd_check_schema, "bad values must be refused naming the key"),
    ]:
        sub.add_parser(name, help=text).set_defaults(func=func)
    pk = sub.add_parser("package", help="package the chart as a .tgz and check the archive")
    pk.add_argument("--version", help="chart version (default: Chart.yaml's)")
    pk.add_argument("--app-version", help="appVersion, and so the default image tag (default: Chart.yaml's)")
    pk.add_argument("--destination", type=Path, default=ROOT / "dist")
    pk.set_defaults(func=cmd_package)
    ps = sub.add_parser("push", help="push a packaged chart to an OCI registry")
    ps.add_argument("archive", type=Path)
    ps.add_argument("remote", help="oci://REGISTRY/PATH")
    ps.set_defaults(func=cmd_push)
    u = sub.add_parser("check-upgrade", help="install, upgrade, uninstall and reinstall against a cluster")
    u.add_argument("--kubeconfig", required=True)
    u.add_argument("--namespace", "-n", default=NAMESPACE)
    u.set_defaults(func=cmd_check_upgrade)
    args = parser.parse_args()
    try:
        return int(args.func(args))
    except helm.HelmError as e:
        print(f"helm: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
