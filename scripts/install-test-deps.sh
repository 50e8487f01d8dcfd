#!/usr/bin/env bash
# Install the system packages the test suite needs (Debian/Ubuntu), idempotently.
#
# Today that is the XRootD server and client (tests/xrootd_server.py starts a
# real xrootd on 127.0.0.1). Python packages (xrootd bindings, fsspec-xrootd)
# come from `pip install -e '.[test]'`.
#
# If it cannot install (not root, no apt-get), it says what is missing and exits
# 0. The XRootD tests then skip with a reason, except with CI=true, where they
# fail.
set -euo pipefail

APT_PACKAGES=(xrootd-server xrootd-client)

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

if command -v xrootd >/dev/null 2>&1; then
    log "xrootd already installed: $(command -v xrootd) ($(xrootd -v 2>&1 | head -n 1))"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    log "xrootd is missing; skipped installing ${APT_PACKAGES[*]}: not running as root"
    log "  run: sudo apt-get install -y --no-install-recommends ${APT_PACKAGES[*]}"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "xrootd is missing; skipped installing ${APT_PACKAGES[*]}: apt-get not found (not Debian/Ubuntu?)"
    log "  install an XRootD server (>= 5.5) providing the 'xrootd' binary by other means"
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

if ! command -v xrootd >/dev/null 2>&1; then
    log "installed ${APT_PACKAGES[*]} but 'xrootd' is still not on PATH"
    exit 1
fi
if ! id -u xrootd >/dev/null 2>&1; then
    # The Debian package creates this user. The tests need it when they run
    # as root, because xrootd refuses to run as root.
    log "warning: no 'xrootd' user; tests run as root will skip"
fi
log "done: $(command -v xrootd) ($(xrootd -v 2>&1 | head -n 1))"
