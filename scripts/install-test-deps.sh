#!/usr/bin/env bash
# Install the system packages the test suite needs (Debian/Ubuntu), idempotently.
#
# Today that is the XRootD server and client (tests/xrootd_server.py starts a
# real xrootd on 127.0.0.1) and Chromium (tests/test_dashboard.py opens the
# live dashboard in it, headless, through playwright). Python packages (xrootd
# bindings, fsspec-xrootd, playwright) come from `pip install -e '.[test]'`.
#
# If it cannot install (not root, no apt-get), it says what is missing and exits
# 0. The XRootD tests then skip with a reason, except with CI=true, where they
# fail; the browser test skips with a reason.
set -euo pipefail

# "command:package ..." : the packages to install when the command is missing
NEEDED=("xrootd:xrootd-server xrootd-client" "chromium:chromium")

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

APT_PACKAGES=()
for entry in "${NEEDED[@]}"; do
    cmd="${entry%%:*}"
    if command -v "$cmd" >/dev/null 2>&1; then
        log "$cmd already installed: $(command -v "$cmd")"
    else
        read -r -a pkgs <<<"${entry#*:}"
        APT_PACKAGES+=("${pkgs[@]}")
    fi
done
if [[ ${#APT_PACKAGES[@]} -eq 0 ]]; then
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    log "skipped installing ${APT_PACKAGES[*]}: not running as root"
    log "  run: sudo apt-get install -y --no-install-recommends ${APT_PACKAGES[*]}"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "skipped installing ${APT_PACKAGES[*]}: apt-get not found (not Debian/Ubuntu?)"
    log "  install an XRootD server (>= 5.5) providing the 'xrootd' binary, and Chromium, by other means"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

# Run `apt-get update` only if the package index does not know the packages
# yet (e.g. a fresh container with empty /var/lib/apt/lists).
needs_update=0
for pkg in "${APT_PACKAGES[@]}"; do
    candidate="$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    if [[ -z "$candidate" || "$candidate" == "(none)" ]]; then
        needs_update=1
        break
    fi
done
if [[ "$needs_update" -eq 1 ]]; then
    log "refreshing the apt package index"
    apt-get update
fi

log "installing ${APT_PACKAGES[*]}"
apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"

for entry in "${NEEDED[@]}"; do
    cmd="${entry%%:*}"
    if ! command -v "$cmd" >/dev/null 2>&1; then
        log "installed ${APT_PACKAGES[*]} but '$cmd' is still not on PATH"
        exit 1
    fi
done
if ! id -u xrootd >/dev/null 2>&1; then
    # The Debian package creates this user. The tests need it when they run
    # as root, because xrootd refuses to run as root.
    log "warning: no 'xrootd' user; tests run as root will skip"
fi
log "done: $(command -v xrootd) ($(xrootd -v 2>&1 | head -n 1)), $(command -v chromium)"
