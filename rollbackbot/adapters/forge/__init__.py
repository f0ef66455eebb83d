"""Forge clients (GitHub, GitLab) behind the ``Forge`` port, for pull-request mode."""

from __future__ import annotations

from pydantic import SecretStr

from rollbackbot.adapters.forge.github import GitHubForge
from rollbackbot.adapters.forge.gitlab import GitLabForge
from rollbackbot.core.policy import ForgeKind, GitDelivery
from rollbackbot.errors import ConfigError
from rollbackbot.ports import Forge


def forge_clients(api_url: str, token: SecretStr) -> ForgeClients:
    """One client per (forge, repository), made on first use and kept."""
    return ForgeClients(api_url, token)


class ForgeClients:
    """The ``ForgeFor`` of ``PullRequestMode``: a policy's git block → its forge client."""

    def __init__(self, api_url: str, token: SecretStr) -> None:
        self.api_url = api_url
        self._token = token
        self._clients: dict[tuple[str, str], Forge] = {}

    def __call__(self, delivery: GitDelivery) -> Forge:
        if delivery.forge is None or delivery.repository is None:
            raise ConfigError("git.mode pull-request needs forge and repository")
        key = (delivery.forge.value, delivery.repository)
        if key not in self._clients:
            self._clients[key] = self._make(delivery.forge, delivery.repository)
        return self._clients[key]

    def _make(self, kind: ForgeKind, repository: str) -> Forge:
        if kind is ForgeKind.github:
            return GitHubForge(self.api_url, self._token, repository)
        return GitLabForge(self.api_url, self._token, repository)
