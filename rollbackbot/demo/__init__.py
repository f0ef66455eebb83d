"""``rollbackbot demo``: the whole loop on an embedded sandbox (``run``) and its Slack proposal (``propose``)."""

from rollbackbot.demo.run import run_demo

__all__ = ["run_demo"]
