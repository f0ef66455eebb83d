# syntax=docker/dockerfile:1
# rollbackbot image: the wheel built in one stage and installed into a virtualenv, which the slim
# runtime stage copies. tests/deploy/test_wheel.py runs the same steps without Docker (pip wheel
# --no-deps, a fresh virtualenv, pip install of the wheel, then the entrypoint command), so keep
# the two in step. The `postgresql` extra (psycopg) lets the image run several replicas on PostgreSQL
# (manifests/overlays/ha). Build: docker build -t rollbackbot .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY rollbackbot ./rollbackbot
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/rollbackbot \
    && /opt/rollbackbot/bin/pip install "$(echo /wheels/rollbackbot-*.whl)[postgresql]"

FROM ${PYTHON_IMAGE}
# git and ssh verify the signed release tags and push the rollback commit; tini, as PID 1,
# forwards signals and reaps git's and ssh's children. DL3008 (pin apt package versions) is
# ignored on purpose: the base image tag pins the Debian release (bookworm), and exact versions
# would break the build at every Debian security update instead of taking it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 rollbackbot \
    && useradd --uid 10001 --gid 10001 --home-dir /var/lib/rollbackbot --create-home --shell /usr/sbin/nologin rollbackbot
COPY --from=build /opt/rollbackbot /opt/rollbackbot
# Defaults; the Kubernetes manifests mount their own policies over them.
COPY policies /etc/rollbackbot/policies
ENV PATH=/opt/rollbackbot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ROLLBACKBOT_POLICIES=/etc/rollbackbot/policies \
    ROLLBACKBOT_GIT_WORKDIR=/var/lib/rollbackbot/repo \
    ROLLBACKBOT_DATABASE_URL=sqlite:////var/lib/rollbackbot/state.db \
    ROLLBACKBOT_EVIDENCE_URL=file:///var/lib/rollbackbot/evidence
USER 10001:10001
WORKDIR /var/lib/rollbackbot
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["tini", "--", "rollbackbot", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8080"]
