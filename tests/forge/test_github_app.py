"""GitHub App authentication: rollbackbot mints its installation token from the App's key and renews it.

The fake GitHub verifies the App's RS256 JWT with the App's public key, issues installation tokens that stop
working after their lifetime, and can revoke one early.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from rollbackbot.adapters.forge.app_token import RENEW_BEFORE, InstallationTokens, app_jwt
from rollbackbot.adapters.forge.github import GitHubForge
from rollbackbot.errors import ConfigError, PermanentError
from rollbackbot.testing.forge.github import FakeGitHub
from rollbackbot.testing.forge.server import create_app
from rollbackbot.testing.gitops import AppSpec, Release, build_sandbox
from tests.forge.contract import check_github_exchange, recorded

APP_ID, INSTALLATION = "123456", "98765432"
BRANCH = "rollbackbot/app/inc-0123456789abcdef"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> SecretStr:
    encoded = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SecretStr(encoded.decode())


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path) -> tuple[FakeGitHub, rsa.RSAPrivateKey, Clock]:
    sandbox = build_sandbox(tmp_path / "gitops", [AppSpec("app", [Release("1.0.0")])])
    sandbox.git("branch", BRANCH, "main")
    key, clock = _key(), Clock()
    github = FakeGitHub("acme/gitops", sandbox.remote_path, users={})
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    github.install_app(APP_ID, public, INSTALLATION, "rollbackbot[bot]")
    github.now = clock
    return github, key, clock


def _client(github: FakeGitHub, key: rsa.RSAPrivateKey, clock: Clock) -> tuple[GitHubForge, InstallationTokens]:
    transport = httpx.ASGITransport(create_app(github))
    tokens = InstallationTokens("http://github", APP_ID, INSTALLATION, _pem(key), transport=transport, clock=clock)
    return GitHubForge("http://github", tokens, "acme/gitops", transport=transport, wait_max=0.01), tokens


async def test_the_installation_token_is_minted_once_and_used_for_every_call(world) -> None:  # type: ignore[no-untyped-def]
    github, key, clock = world
    client, tokens = _client(github, key, clock)
    with recorded(github) as exchanges:
        try:
            pull = await client.open_pull_request(BRANCH, "main", "rollback(app): v2 -> v1", "body")
            await client.pull_request(pull.number)
            await client.add_labels(pull.number, ["rollback"])
        finally:
            await client.aclose()
    for exchange in exchanges:  # minting included: apps/create-installation-access-token as GitHub documents it
        check_github_exchange(exchange)
    assert tokens.minted == 1
    [minted] = [r for r in github.requests if r["path"].endswith("/access_tokens")]
    used = {r["token"] for r in github.requests if r["path"].startswith("/repos/")}
    assert len(used) == 1 and used.pop() in github.users  # the installation token, not the JWT
    assert minted["token"] not in github.users  # the App JWT itself is no API token
    assert github.pulls[pull.number].user == "rollbackbot[bot]"


async def test_the_token_is_renewed_before_it_expires_and_once_more_when_revoked(world) -> None:  # type: ignore[no-untyped-def]
    github, key, clock = world
    client, tokens = _client(github, key, clock)
    try:
        pull = await client.open_pull_request(BRANCH, "main", "rollback(app): v2 -> v1", "body")
        clock.now += github.token_ttl - RENEW_BEFORE + 1  # inside the renewal margin: a new one before use
        await client.pull_request(pull.number)
        assert tokens.minted == 2
        github.revoke(await tokens.token())  # revoked early: the 401 renews it once and the call succeeds
        assert (await client.pull_request(pull.number)).number == pull.number
        assert tokens.minted == 3
        clock.now += github.token_ttl + 1  # the fake refuses expired tokens: never sent, renewed first
        assert (await client.pull_request(pull.number)).number == pull.number
        assert tokens.minted == 4
    finally:
        await client.aclose()


async def test_a_wrong_key_is_a_clear_permanent_error_that_names_no_secret(world, caplog) -> None:  # type: ignore[no-untyped-def]
    github, _, clock = world
    other = _key()
    client, _ = _client(github, other, clock)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(PermanentError) as refused:
            await client.pull_request(1)
    finally:
        await client.aclose()
    message = str(refused.value)
    assert "installation 98765432 refused an installation token: HTTP 401" in message
    pem = _pem(other).get_secret_value()
    for secret in (pem, pem.splitlines()[1], app_jwt(APP_ID, other, clock.now)):
        assert secret not in message and secret not in caplog.text


def test_the_jwt_is_what_github_asks_for(world) -> None:  # type: ignore[no-untyped-def]
    _, key, clock = world
    claims = json.loads(base64.urlsafe_b64decode(app_jwt(APP_ID, key, clock.now).split(".")[1] + "=="))
    assert claims["iss"] == APP_ID and claims["iat"] == int(clock.now) - 60
    assert 0 < claims["exp"] - claims["iat"] <= 600


def test_a_key_that_is_not_an_rsa_pem_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="ROLLBACKBOT_FORGE_APP_PRIVATE_KEY_FILE: not an unencrypted PEM"):
        InstallationTokens("http://github", APP_ID, INSTALLATION, SecretStr("-----BEGIN NOTHING-----"))
