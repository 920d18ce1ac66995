#!/usr/bin/env bash
# Installs Debian's headless-capable `chromium` if it is missing (used by the dashboard test).
# Idempotent: exits at once when a chromium binary is already on PATH.
# Needs root (or passwordless sudo) and network access to the Debian mirrors.
set -euo pipefail
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then
    echo "[chromium] found $(command -v "$b")"
    exit 0
  fi
done
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "[chromium] not installed and not root (no passwordless sudo): run 'apt-get install -y chromium' as root" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
echo "[chromium] installing Debian package 'chromium' (apt-get)"
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "[chromium] install failed" >&2; exit 1; }
echo "[chromium] installed $(chromium --version 2>/dev/null || echo chromium)"
