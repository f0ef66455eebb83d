"""The shadow sandbox's Kubernetes objects: valid against the Kubernetes schemas, and cut off by construction."""

from __future__ import annotations

import json

import pytest
import yaml

from rollbackbot.core.policy import RouteKind, Shadow
from rollbackbot.core.sandbox import render_sandbox, sandbox_objects, sandbox_path
from rollbackbot.errors import PolicyError

kubernetes_validate = pytest.importorskip("kubernetes_validate")
KUBERNETES_VERSION = "1.32"
IMAGE = "registry.example/chat-llm@sha256:" + "ab" * 32
SHADOW = Shadow.model_validate(
    {"percent": 5, "sandbox": {"namespace": "ml-quarantine", "name": "chat-llm-v2-shadow", "replicas": 2}}
)


def _objects(kind: RouteKind = RouteKind.http_route) -> list[dict[str, object]]:
    return sandbox_objects(
        SHADOW, image=IMAGE, port=8000, route_kind=kind, route_namespace="ml-prod", proxy_namespace="gateway-system"
    )


@pytest.mark.parametrize("kind", list(RouteKind))
def test_every_core_object_is_valid_kubernetes(kind: RouteKind) -> None:
    for obj in _objects(kind):
        if obj["kind"] == "ReferenceGrant":
            continue  # a Gateway API CRD, not in the core schemas; its fields are checked below
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_sandbox_has_no_credentials_no_egress_and_takes_traffic_only_from_the_proxies() -> None:
    by_kind = {str(o["kind"]): o for o in _objects()}
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert "volumes" not in pod and all("env" not in c and "envFrom" not in c for c in pod["containers"])
    network = by_kind["NetworkPolicy"]["spec"]  # type: ignore[index]
    assert network["policyTypes"] == ["Ingress", "Egress"] and network["egress"] == []
    [ingress] = network["ingress"]
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}}
    ]
    grant = by_kind["ReferenceGrant"]["spec"]  # type: ignore[index]
    assert grant["from"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "ml-prod"}]
    assert grant["to"] == [{"group": "", "kind": "Service", "name": "chat-llm-v2-shadow"}]
    assert "ReferenceGrant" not in {o["kind"] for o in _objects(RouteKind.virtual_service)}


def test_only_a_digest_and_never_the_production_namespace() -> None:
    with pytest.raises(PolicyError, match="by digest only"):
        sandbox_objects(
            SHADOW,
            image="chat-llm:2.0",
            port=8000,
            route_kind=RouteKind.http_route,
            route_namespace="a",
            proxy_namespace="b",
        )
    with pytest.raises(PolicyError, match="production namespace"):
        sandbox_objects(
            SHADOW,
            image=IMAGE,
            port=8000,
            route_kind=RouteKind.http_route,
            route_namespace="ml-quarantine",
            proxy_namespace="b",
        )


def test_the_file_is_multi_document_yaml_next_to_the_route() -> None:

    text = render_sandbox(_objects()).decode()
    assert [d["kind"] for d in yaml.safe_load_all(text) if d] == [str(o["kind"]) for o in _objects()]
    assert json.dumps(_objects()) == json.dumps([d for d in yaml.safe_load_all(text) if d])
    assert sandbox_path(SHADOW, "apps/chat-llm/route.yaml") == "apps/chat-llm/shadow-chat-llm-v2-shadow.yaml"
