#!/usr/bin/env bash
# Install fdguard and the real components its tests and demos drive.
# Idempotent: skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: strace (birth certificates, fault injection), nodejs (the main
# real libuv runtime), lsof and iproute2 (ss) to compare against, prometheus
# (scrapes the exporter; promtool checks rules), libuv1-dev (native scenarios),
# wrk (load), fiu-utils (libfiu fault injection), gdb (live stacks), gcc (builds
# the small C programs on the system libuv that tests run), chromium (renders
# the HTML bug report headless in tests), cmake (`fdguard lab build` builds libuv
# releases from source).
PKGS=(strace nodejs lsof iproute2 prometheus libuv1-dev wrk fiu-utils gdb procps gcc chromium cmake)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# wheel: lets `fdguard.lab.sources` fetch uvloop sdists (for their vendored libuv) with
# --no-build-isolation: seconds instead of minutes building a throwaway Cython env.
python3 -m pip install -q --disable-pip-version-check wheel
