"""Incident pages served by rollbackbot itself (docs/ui.md); mounted when ROLLBACKBOT_UI=true."""

from rollbackbot.ui.router import UiConfig, ui_router

__all__ = ["UiConfig", "ui_router"]
