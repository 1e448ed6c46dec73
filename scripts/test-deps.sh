#!/usr/bin/env bash
# What the test suite needs from the machine beyond npm packages, installed from Debian's packages when missing.
# `npm test` runs this first (the `pretest` script), so the README's `npm ci && npm test` passes on a fresh
# machine. `--check` only reports what is missing (exit 1 if anything is), and installs nothing.
set -euo pipefail

# One line per need: the file the tests use, then the Debian package that provides it.
# report.test.ts opens report.html in Chromium (driven by playwright-core, which downloads no browser).
# queue-mode.test.ts starts its own redis-server processes (127.0.0.1, a free port, AOF on) for BullMQ.
NEEDS=(
  "${AIR_TEST_CHROMIUM:-/usr/bin/chromium} chromium"
  "${AIR_TEST_REDIS:-/usr/bin/redis-server} redis-server"
)

missing=()
for need in "${NEEDS[@]}"; do
  read -r file package <<<"$need"
  [[ -x "$file" ]] || missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then exit 0; fi
if [[ "${1:-}" == "--check" ]]; then
  echo "test-deps: missing Debian packages: ${missing[*]}" >&2
  exit 1
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "test-deps: the tests need the Debian packages ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: the tests need ${missing[*]} (Debian package names); install them with your package manager" >&2
  exit 1
fi
echo "test-deps: installing ${missing[*]} from Debian's packages (once; the tests need them)" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
