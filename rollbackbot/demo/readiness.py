"""The demo's readiness act: before any incident, ``rollbackbot readiness`` checks every guarded app.

The demo breaks one app on purpose: badge-vision's previous release 3.0.0 was never signed, so a
rollback of badge-vision would find no verified target. Every other app is ready.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rollbackbot.testing.gitops import AppSpec, Release

BROKEN_APP = "badge-vision"
EMBEDDED_POLICY = """\
apiVersion: rollbackbot/v1
kind: RollbackPolicy
metadata: {name: badge-vision-access}
spec:
  matchers: ['alertname =~ "ModelFalseNegativeSpike|ModelHighConfidenceMisclassification"', 'app = "badge-vision"']
  target:
    argocdApps: [badge-vision, badge-vision-features]
    project: ml-prod
    paths: [apps/badge-vision, apps/badge-vision-features]
    tags: "badge-vision/v*"
  mode: auto
"""


def releases() -> AppSpec:
    """badge-vision: the release before the deployed one was never signed (the demo's broken escape hatch)."""
    return AppSpec(BROKEN_APP, [Release("3.0.0", signed=False), Release("3.1.0")], with_features=True)


def argo_apps() -> list[dict[str, str]]:
    """The Argo CD applications of badge-vision (model and feature pipeline)."""
    return [
        {"name": name, "project": "ml-prod", "path": f"apps/{name}"} for name in (BROKEN_APP, f"{BROKEN_APP}-features")
    ]


def check(env: dict[str, str], work: Path, say: Any) -> int:
    """Run ``rollbackbot readiness --json`` as a release CI job would; 0 when exactly the broken app is not ready."""
    say("\n   rollback readiness, before any incident (`rollbackbot readiness`, exit 1 when an app is not ready):")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLBACKBOT_")} | env
    full_env["ROLLBACKBOT_GIT_WORKDIR"] = str(work / "readiness-repo")  # its own clone, beside the service's
    result = subprocess.run(
        [sys.executable, "-m", "rollbackbot", "readiness", "--json"],
        env=full_env,
        capture_output=True,
        text=True,
        cwd=work,
        timeout=120,
        check=False,
    )
    try:
        report = json.loads(result.stdout)
    except ValueError:
        say(f"   readiness failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
        return 1
    for app in report["apps"]:
        move = f"{app['current'] or 'untagged'} -> {app['target'] or 'none'}"
        verdict = "ready" if app["ready"] else "NOT READY: " + ", ".join(b["reason"] for b in app["blockers"])
        say(f"     {app['app']:<16} {move:<44} {verdict}")
        for blocker in app["blockers"][:2]:
            say(f"       {blocker['detail'][:110]}")
            say(f"       fix: {blocker['remedy']}")
    not_ready = sorted(a["app"] for a in report["apps"] if not a["ready"])
    say(f"   exit code {result.returncode}: a release CI job would stop here until {', '.join(not_ready)} is fixed")
    return 0 if result.returncode == 1 and not_ready == [BROKEN_APP] else 1
