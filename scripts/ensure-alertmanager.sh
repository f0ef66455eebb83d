#!/usr/bin/env bash
# Install Debian's prometheus-alertmanager and prometheus when missing and we can (root + apt).
# Without them the end-to-end tests skip with a visible reason, except under CI=true where they
# fail; `make demo-live` says what to install.
set -u
missing=()
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
if [ "${#missing[@]}" = "0" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (Debian packages) for the end-to-end tests and make demo-live"
  apt-get update -qq >/dev/null && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    && exit 0
  echo "WARNING: could not install ${missing[*]}" >&2
else
  echo "WARNING: ${missing[*]} not found and not root with apt-get: end-to-end tests with the real" \
    "Prometheus/Alertmanager will be skipped (apt-get install -y --no-install-recommends ${missing[*]})" >&2
fi
exit 0
