#!/usr/bin/env bash
# Install Debian's prometheus-alertmanager when it is missing and we can (root + apt).
# Without it the end-to-end tests skip with a visible reason, except under CI=true where they fail.
set -u
if command -v prometheus-alertmanager >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing prometheus-alertmanager (Debian package) for the end-to-end tests"
  apt-get update -qq >/dev/null && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null \
    && exit 0
  echo "WARNING: could not install prometheus-alertmanager" >&2
else
  echo "WARNING: prometheus-alertmanager not found and not root with apt-get: end-to-end tests with the real Alertmanager will be skipped" >&2
fi
exit 0
