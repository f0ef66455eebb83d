"""Run a canary rollback in its own process, slowly, so a test can SIGKILL it between steps.

Usage: python -m tests.canary.kill_worker TMP SANDBOX_ROOT. Pauses 0.3 s before each analysis (real
sleep); prints "step <k/n>" after each commit is synced.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from rollbackbot.testing.gitops import GitOpsSandbox
from tests.canary.helpers import canary_policy
from tests.canary.rig import QUERY, canary_rig


async def main(tmp: Path, root: Path) -> None:
    """Drive the canary until it finishes (or the process is killed)."""
    async with canary_rig(tmp, {QUERY: [0.001]}, sandbox=GitOpsSandbox(root)) as rig:

        async def slow(seconds: float) -> None:
            print(f"pause after {len(rig.step_commits())} commits", flush=True)
            await asyncio.sleep(0.3)

        rig.rollout.sleep = slow
        policy = canary_policy()
        await rig.rollout.run("inc-killed", policy, {"app": "chat-llm", "severity": "warning"})
        print("completed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
