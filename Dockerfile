# syntax=docker/dockerfile:1
# Build a wheel in one stage, install it into a slim runtime with git and ssh (tag verification needs both).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY rollbackbot ./rollbackbot
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 rollbackbot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY policies /etc/rollbackbot/policies
USER 10001
WORKDIR /var/lib/rollbackbot
ENV ROLLBACKBOT_POLICIES=/etc/rollbackbot/policies \
    ROLLBACKBOT_GIT_WORKDIR=/var/lib/rollbackbot/repo \
    ROLLBACKBOT_DATABASE_URL=sqlite:////var/lib/rollbackbot/state.db \
    ROLLBACKBOT_EVIDENCE_URL=file:///var/lib/rollbackbot/evidence
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"]
ENTRYPOINT ["rollbackbot", "serve", "--host", "0.0.0.0", "--port", "8080"]
