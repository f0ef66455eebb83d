"""The shadow sandbox as Kubernetes objects: the compromised release, cut off from everything.

Purely computational. The sandbox runs the compromised release's exact image digest with no
service-account token and no Secrets; its NetworkPolicy denies all egress and admits ingress only
from the mirroring proxies' namespace. For Gateway API, a ReferenceGrant lets the production
HTTPRoute name the sandbox Service across namespaces (without it the mirror is dropped).
"""

from __future__ import annotations

import json
import re
from typing import Any

from rollbackbot.core.policy import RouteKind, Shadow
from rollbackbot.errors import PolicyError

_DIGEST_PIN = re.compile(r"[^\s@]+@sha256:[0-9a-f]{64}")


def sandbox_path(shadow: Shadow, route_file: str) -> str:
    """Next to the route, so the same Argo CD application deploys it; one file, so removal is one path."""
    directory = route_file.rpartition("/")[0]
    name = f"shadow-{shadow.sandbox.name}.yaml"
    return f"{directory}/{name}" if directory else name


def sandbox_objects(
    shadow: Shadow, *, image: str, port: int, route_kind: RouteKind, route_namespace: str, proxy_namespace: str
) -> list[dict[str, Any]]:
    """Namespace, Deployment, Service, NetworkPolicy (and ReferenceGrant for HTTPRoute) of the sandbox."""
    if not _DIGEST_PIN.fullmatch(image):
        raise PolicyError(f"the sandbox runs the compromised release by digest only, not {image!r}")
    box = shadow.sandbox
    if box.namespace == route_namespace:
        raise PolicyError(f"shadow sandbox namespace {box.namespace!r} is the production namespace")
    labels = {"app": box.name, "rollbackbot.dev/sandbox": "true"}
    meta = {"name": box.name, "namespace": box.namespace, "labels": labels}
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": box.namespace, "labels": labels}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": box.replicas,
                "selector": {"matchLabels": {"app": box.name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,  # no other Service's address in the environment
                        "containers": [
                            {
                                "name": "model",
                                "image": image,
                                "ports": [{"containerPort": port}],
                                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"selector": {"app": box.name}, "ports": [{"port": port, "targetPort": port}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta,
            "spec": {
                "podSelector": {"matchLabels": {"app": box.name}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [
                            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": proxy_namespace}}}
                        ],
                        "ports": [{"port": port}],
                    }
                ],
                "egress": [],  # none at all: no DNS, no model registry, no callbacks to an attacker
            },
        },
    ]
    if route_kind is RouteKind.http_route:
        objects.append(
            {
                "apiVersion": "gateway.networking.k8s.io/v1beta1",
                "kind": "ReferenceGrant",
                "metadata": {"name": f"{box.name}-mirror", "namespace": box.namespace, "labels": labels},
                "spec": {
                    "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": route_namespace}],
                    "to": [{"group": "", "kind": "Service", "name": box.name}],
                },
            }
        )
    return objects


def render_sandbox(objects: list[dict[str, Any]]) -> bytes:
    """One multi-document YAML file (JSON is valid YAML; no YAML library in core)."""
    header = "# Written by rollbackbot for a shadow of a compromised release; removed at the shadow's ttl.\n"
    return (header + "".join(f"---\n{json.dumps(o, indent=2)}\n" for o in objects)).encode()
