#!/usr/bin/env bash
# The UI tests drive Debian's chromium through Playwright. Install it when it is missing and this
# machine lets us (root, or password-less sudo, with apt-get); otherwise say how, and the browser
# tests skip with the same advice.
set -uo pipefail
browser="${CHROMIUM_PATH:-/usr/bin/chromium}"
[ -x "$browser" ] && exit 0
command -v apt-get >/dev/null 2>&1 || { echo "note: no chromium at $browser and no apt-get; browser tests will be skipped (set CHROMIUM_PATH)."; exit 0; }
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  echo "note: chromium is not installed; run 'sudo apt-get install chromium' to run the browser tests (skipped now)."
  exit 0
fi
echo "Installing Debian's chromium for the browser tests (one time)..."
$sudo apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
  || { $sudo apt-get update >/dev/null 2>&1 && $sudo apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } \
  || echo "note: could not install chromium; browser tests will be skipped."
exit 0
