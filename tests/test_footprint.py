"""What ``rollbackbot serve`` imports before it knows what is configured stays lean.

Each module costs memory for the life of the process (its code objects): Slack's SDK with aiohttp
~10 MB, Alembic with Mako ~10 MB, ruamel.yaml with jsonschema ~4 MB. They are imported when Slack
is configured, when the schema needs migrating, when a canary first edits a route.
"""

from __future__ import annotations

import json
import subprocess
import sys

IMPORTS = """
import json, sys
import rollbackbot.commands, rollbackbot.wiring, rollbackbot.api, rollbackbot.service, rollbackbot.shutdown
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""

LOADED_ON_USE = {"aiohttp", "slack_sdk", "slack_bolt", "alembic", "mako", "ruamel", "jsonschema", "boto3", "botocore"}


def test_optional_integrations_are_not_imported_at_start() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=True, timeout=60)
    loaded = set(json.loads(done.stdout))
    assert "fastapi" in loaded  # the check sees the imports
    assert loaded & LOADED_ON_USE == set()
