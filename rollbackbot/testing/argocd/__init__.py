"""A faithful fake Argo CD v3.5.1 API server: the stand-in for Argo CD in tests and demos.

``server`` builds the ASGI app and the process entry point; ``state`` and ``controller`` simulate
the application controller; ``routes``, ``views``, ``decode`` and ``wire`` speak the REST API as
Argo CD does (checked against its swagger in ``tests/contract``); ``git`` reads the GitOps remote.
"""

from rollbackbot.testing.argocd.server import (
    AppFaults,
    FakeAppConfig,
    FakeArgoConfig,
    FakeArgoState,
    create_app,
    get_state,
    main,
    make_token,
)

__all__ = [
    "AppFaults",
    "FakeAppConfig",
    "FakeArgoConfig",
    "FakeArgoState",
    "create_app",
    "get_state",
    "main",
    "make_token",
]
