"""deploy/k8s, validated offline: Kustomize base + example overlay and the evaluation's RayJob.

* rendering: ``kubectl kustomize`` / ``kustomize build`` when installed, else tests/k8s_helpers'
  small renderer (compared with the real one where both exist);
* every document against the Kubernetes JSON schemas (``kubernetes-validate``, strict: unknown
  fields fail) for the oldest and newest Kubernetes versions we claim; the RayJob (a CRD: no schema
  there) against KubeRay's ray.io/v1 field list, its pod templates as core/v1 PodTemplates;
* the security settings read directly (non-root, read-only root file system, no privilege
  escalation, capabilities dropped, requests and limits, read-only model volume, gRPC probes on 8500);
* the container arguments through the project's own command-line parsers (``python -m serving``
  with the ConfigMap's file, ``python -m evaluation`` with the RayJob's entrypoint);
* checkov (``make k8s-tools`` installs it into .venv-tools): no failed check but those that
  deploy/k8s/README.md lists and explains.
"""

from __future__ import annotations

import shlex

import pytest
import yaml

from tests.k8s_helpers import (
    K8S, as_pod, by_key, kustomize_command, load_documents, rayjob_errors, rayjob_pod_templates,
    readme_accepted_failures, render, render_python, run_checkov, checkov_binary,
)

# grpc probes are GA since 1.27; the PDB/HPA/NetworkPolicy versions used exist in all of these
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
SERVING_LABELS = {"app.kubernetes.io/name": "cnn-explain", "app.kubernetes.io/component": "serving"}
HEADLESS_TARGET = "dns:///cnn-explain-serving-headless.cnn-explain.svc.cluster.local:8500"


@pytest.fixture(scope="module")
def base():
    return by_key(render(K8S / "base"))


@pytest.fixture(scope="module")
def overlay():
    return by_key(render(K8S / "overlays" / "example"))


@pytest.fixture(scope="module")
def rayjob_docs():
    return by_key(load_documents(K8S / "rayjob.yaml"))


@pytest.fixture(scope="module")
def rayjob(rayjob_docs):
    return rayjob_docs[("RayJob", "cnn-explain-evaluation")]


def _container(deployment):
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


# ---------------------------------------------------------------------------- rendering
def test_overlay_renders_every_object_with_its_changes(base, overlay):
    expected = {("Namespace", "cnn-explain"), ("ServiceAccount", "cnn-explain-serving"),
                ("ConfigMap", "cnn-explain-serving-config"), ("Deployment", "cnn-explain-serving"),
                ("Service", "cnn-explain-serving"), ("Service", "cnn-explain-serving-headless"),
                ("HorizontalPodAutoscaler", "cnn-explain-serving"), ("PodDisruptionBudget", "cnn-explain-serving"),
                ("NetworkPolicy", "cnn-explain-serving")}
    assert set(base) == expected
    assert set(overlay) == expected | {("PersistentVolumeClaim", "cnn-explain-models")}
    for (kind, _), doc in overlay.items():
        assert doc["metadata"].get("namespace") == (None if kind == "Namespace" else "cnn-explain")
    deployment = overlay[("Deployment", "cnn-explain-serving")]
    assert deployment["spec"]["replicas"] == 3 and base[("Deployment", "cnn-explain-serving")]["spec"]["replicas"] == 2
    assert _container(deployment)["image"] == "registry.example.com/cnn-explain/serving:0.1.0"
    assert _container(base[("Deployment", "cnn-explain-serving")])["image"] == "cnn-explain-serving:0.1.0"
    assert _container(deployment)["args"][-2:] == ["--version-policy", "latest:2"]
    assert _container(deployment)["resources"]["limits"]["memory"] == "16Gi"
    assert _container(deployment)["resources"]["limits"]["ephemeral-storage"] == "1Gi"  # kept from the base
    hpa = overlay[("HorizontalPodAutoscaler", "cnn-explain-serving")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 10)
    pvc = overlay[("PersistentVolumeClaim", "cnn-explain-models")]
    assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]


def test_python_renderer_equals_kustomize():
    if kustomize_command() is None:
        pytest.skip("neither kustomize nor kubectl is installed: only the Python renderer is available")
    for directory in (K8S / "base", K8S / "overlays" / "example"):
        assert by_key(render_python(directory)) == by_key(render(directory)), directory


# ---------------------------------------------------------------------------- schemas
def test_every_document_validates_against_the_kubernetes_schemas(base, overlay, rayjob_docs, rayjob):
    kv = pytest.importorskip("kubernetes_validate.utils", reason="pip install kubernetes-validate (test extra)")
    docs = [*base.values(), *overlay.values(),
            *(d for d in rayjob_docs.values() if d["kind"] != "RayJob")]
    # the RayJob's pod templates are core/v1 PodTemplateSpecs: validate them as PodTemplate objects
    docs += [{"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"rayjob-{name}"}, "template": t}
             for name, t in rayjob_pod_templates(rayjob).items()]
    assert len(docs) == 9 + 10 + 2 + 2
    for version in KUBERNETES_VERSIONS:
        for doc in docs:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as error:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on Kubernetes {version}: {error}")
    # the validator does reject: a misspelt field and a wrong type
    bad = yaml.safe_load(yaml.safe_dump(overlay[("Deployment", "cnn-explain-serving")]))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 8500}}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, KUBERNETES_VERSIONS[-1], strict=True)
    bad = yaml.safe_load(yaml.safe_dump(overlay[("Service", "cnn-explain-serving")]))
    bad["spec"]["ports"][0]["port"] = "8500"
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, KUBERNETES_VERSIONS[-1], strict=True)


def test_rayjob_follows_kuberay_v1_fields(rayjob):
    assert rayjob_errors(rayjob) == []
    spec = rayjob["spec"]
    assert spec["submissionMode"] == "K8sJobMode" and spec["shutdownAfterJobFinishes"] is True
    assert set(rayjob_pod_templates(rayjob)) == {"head", "submitter"}
    # the checker rejects what KubeRay would: unknown fields, wrong types, missing required ones
    broken = yaml.safe_load(yaml.safe_dump(rayjob))
    broken["spec"]["entryPoint"] = broken["spec"].pop("entrypoint")
    broken["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 2
    broken["spec"]["submissionMode"] = "JobMode"
    del broken["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    errors = rayjob_errors(broken)
    assert len(errors) == 5, errors
    assert any("entryPoint: unknown field" in e for e in errors)
    assert any("spec.entrypoint: required" in e for e in errors)
    assert any("rayStartParams: expected map[str]str" in e for e in errors)
    assert any("submissionMode 'JobMode'" in e for e in errors)
    assert any("headGroupSpec.template: required" in e for e in errors)


# ---------------------------------------------------------------------------- security settings
def _pod_specs(overlay, rayjob):
    specs = {"serving": overlay[("Deployment", "cnn-explain-serving")]["spec"]["template"]["spec"]}
    specs.update({f"ray-{name}": t["spec"] for name, t in rayjob_pod_templates(rayjob).items()})
    return specs


def test_every_pod_runs_restricted(overlay, rayjob):
    for where, spec in _pod_specs(overlay, rayjob).items():
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] >= 10000, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True and context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False and context["privileged"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (where, kind)
            assert ":" in container["image"] and not container["image"].endswith(":latest"), where
            # a read-only root needs a writable /tmp
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and "emptyDir" in {v["name"]: v for v in spec["volumes"]}[tmp[0]["name"]], where


def test_models_are_a_read_only_volume_and_probes_are_grpc_health_on_8500(overlay):
    deployment = overlay[("Deployment", "cnn-explain-serving")]
    spec = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/models"]
    assert mount["readOnly"] is True
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"] == {"claimName": "cnn-explain-models", "readOnly": True}
    assert ("PersistentVolumeClaim", "cnn-explain-models") in overlay
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        # Kubernetes' grpc probe: grpc.health.v1 Check, service "" = the whole server (serving.server
        # sets "" SERVING once the models are loaded, NOT_SERVING while draining)
        assert container[probe]["grpc"] == {"port": 8500}, probe
        assert set(container[probe]) & {"httpGet", "tcpSocket", "exec"} == set(), probe
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501, "metrics": 9090}
    # the server's SIGTERM drain fits in the pod's grace period (preStop sleep first)
    config = yaml.safe_load(yaml.safe_dump(overlay[("ConfigMap", "cnn-explain-serving-config")]))
    import tomllib

    options = tomllib.loads(config["data"]["server.toml"])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pre_stop + options["grace_period_seconds"] < spec["terminationGracePeriodSeconds"]
    assert options["metrics_port"] == ports["metrics"]


def test_services_hpa_pdb_and_network_policy_select_the_serving_pods(overlay):
    pod_labels = overlay[("Deployment", "cnn-explain-serving")]["spec"]["template"]["metadata"]["labels"]
    assert SERVING_LABELS.items() <= pod_labels.items()
    assert overlay[("Deployment", "cnn-explain-serving")]["spec"]["selector"]["matchLabels"] == SERVING_LABELS
    service = overlay[("Service", "cnn-explain-serving")]["spec"]
    headless = overlay[("Service", "cnn-explain-serving-headless")]["spec"]
    for svc in (service, headless):
        assert svc["selector"] == SERVING_LABELS
        assert {(p["port"], p["targetPort"]) for p in svc["ports"]} == {(8500, "grpc"), (8501, "http")}
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is False
    assert service.get("clusterIP") is None  # an ordinary virtual IP
    hpa = overlay[("HorizontalPodAutoscaler", "cnn-explain-serving")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cnn-explain-serving"}
    pdb = overlay[("PodDisruptionBudget", "cnn-explain-serving")]["spec"]
    assert pdb["selector"]["matchLabels"] == SERVING_LABELS and pdb["minAvailable"] < hpa["minReplicas"]
    policy = overlay[("NetworkPolicy", "cnn-explain-serving")]["spec"]
    assert policy["podSelector"]["matchLabels"] == SERVING_LABELS
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == {8500, 8501, 9090}


# ---------------------------------------------------------------------------- the project's own parsers
def test_container_arguments_are_accepted_by_python_m_serving(overlay, tmp_path):
    from serving.config import parse_args

    config = overlay[("ConfigMap", "cnn-explain-serving-config")]["data"]["server.toml"]
    (tmp_path / "server.toml").write_text(config)
    args = _container(overlay[("Deployment", "cnn-explain-serving")])["args"]
    assert args[:2] == ["--config", "/etc/cnn-explain/server.toml"]
    options = parse_args(["--config", str(tmp_path / "server.toml"), *args[2:]])
    assert (options.model_root, options.port, options.host) == ("/models", 8500, "0.0.0.0")
    assert options.version_policy == "latest:2" and options.metrics_port == 9090
    env = {e["name"]: e for e in _container(overlay[("Deployment", "cnn-explain-serving")])["env"]}
    from serving.config import AUTH_TOKEN_ENV

    assert env[AUTH_TOKEN_ENV]["valueFrom"]["secretKeyRef"] == {"name": "cnn-explain-auth", "key": "token"}


def test_rayjob_runs_the_evaluation_against_the_headless_service(overlay, rayjob, rayjob_docs):
    from evaluation.__main__ import _parser
    from serving.client import parse_addresses

    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "evaluation"]
    args = _parser().parse_args(argv[3:])
    assert args.server == HEADLESS_TARGET and parse_addresses(args.server) == [HEADLESS_TARGET]
    headless = overlay[("Service", "cnn-explain-serving-headless")]
    name, namespace = headless["metadata"]["name"], headless["metadata"]["namespace"]
    assert HEADLESS_TARGET == f"dns:///{name}.{namespace}.svc.cluster.local:8500"
    assert rayjob["metadata"]["namespace"] == namespace
    # the report lands on the PVC the head mounts
    head = rayjob_pod_templates(rayjob)["head"]["spec"]
    [mount] = [m for c in head["containers"] for m in c["volumeMounts"] if str(args.out).startswith(m["mountPath"])]
    [volume] = [v for v in head["volumes"] if v["name"] == mount["name"]]
    assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in rayjob_docs
    env = {e["name"]: e for c in head["containers"] for e in c.get("env", [])}
    assert env["EXPLAIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "cnn-explain-auth", "key": "token"}
    # the serving pods' NetworkPolicy admits the evaluation (same namespace)
    ingress = overlay[("NetworkPolicy", "cnn-explain-serving")]["spec"]["ingress"]
    assert any(src == {"podSelector": {}} for rule in ingress for src in rule["from"])


# ---------------------------------------------------------------------------- checkov
def test_checkov_fails_no_check_the_readme_does_not_explain(overlay, rayjob, rayjob_docs, tmp_path):
    binary = checkov_binary()
    if binary is None:
        pytest.skip("checkov is not installed: `make k8s-tools` puts it in .venv-tools (or set $CHECKOV)")
    documents = [*overlay.values(), *(d for d in rayjob_docs.values() if d["kind"] != "RayJob"),
                 *(as_pod(rayjob, name, t) for name, t in rayjob_pod_templates(rayjob).items())]
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    report = run_checkov(binary, manifest)
    results = report["results"]
    failed = {(c["check_id"], c["resource"]) for c in results["failed_checks"]}
    accepted = readme_accepted_failures(K8S / "README.md")
    assert len(results["passed_checks"]) > 100 and report["summary"]["parsing_errors"] == 0
    assert failed - set(accepted) == set(), "checkov failures the README does not explain"
    assert set(accepted) - failed == set(), "README entries checkov no longer reports: remove them"
    passed = {c["check_id"] for c in results["passed_checks"]}
    for check in ("CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28",
                  "CKV_K8S_37", "CKV_K8S_38", "CKV_K8S_40", "CKV2_K8S_6"):
        assert check in passed, check
