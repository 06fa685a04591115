#!/usr/bin/env bash
# Install Debian's chromium (headless browser for the status-page test) if it is missing.
# Idempotent: prints the path and exits when chromium is already there. Needs root or sudo.
set -euo pipefail
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null; then echo "chromium present: $(command -v "$name")"; exit 0; fi
done
echo "installing chromium (Debian package)"
sudo_=""
if [ "$(id -u)" != 0 ]; then sudo_="sudo"; fi
$sudo_ apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "chromium installed: $(command -v chromium)"
