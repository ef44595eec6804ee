#!/usr/bin/env bash
# Open a lesson notebook in JupyterLab in a real browser (headless Chromium), as a student would, and save a
# screenshot. JupyterLab runs with the same offline settings as `make lesson` (no news prompt, no update check).
#
#   benchmarks/lesson_in_browser.sh [NOTEBOOK] [OUT.png]
#
# NOTEBOOK defaults to the student version; an executed copy (runs/lesson/small/notebooks/...) shows its plots.
# Needs Debian's chromium (apt-get install chromium) and the project's .venv.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
nb=$(realpath "${1:-$repo/notebooks/lesson/forgetting_student.ipynb}")
out=${2:-/tmp/lesson_in_browser.png}
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "no chromium on PATH: apt-get install chromium" >&2; exit 2; }
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
log=$(mktemp /tmp/lesson_lab.XXXXXX.log)
"$repo/.venv/bin/jupyter" labextension disable "@jupyterlab/apputils-extension:announcements" >/dev/null 2>&1 || true
"$repo/.venv/bin/jupyter" lab --no-browser --allow-root --ip=127.0.0.1 --port="$port" --IdentityProvider.token="$token" \
  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate --ServerApp.root_dir="$(dirname "$nb")" \
  >"$log" 2>&1 &
lab=$!
trap 'kill $lab 2>/dev/null || true' EXIT
up=
for _ in $(seq 90); do
  kill -0 "$lab" 2>/dev/null || break
  curl -sf "http://127.0.0.1:$port/api?token=$token" >/dev/null && { up=1; break; }
  sleep 1
done
[ -n "$up" ] || { echo "JupyterLab did not start; its log: $log" >&2; tail -5 "$log" >&2; exit 1; }
rm -f "$out"
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,2400 \
  --virtual-time-budget=40000 --screenshot="$out" "http://127.0.0.1:$port/lab/tree/$(basename "$nb")?token=$token" \
  2>/dev/null
[ -s "$out" ] || { echo "the browser wrote no screenshot" >&2; exit 1; }
echo "screenshot: $out (JupyterLab's log: $log)"
