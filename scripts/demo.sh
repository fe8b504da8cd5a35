#!/usr/bin/env bash
# The main demo: an AioContext attached to a GMainLoop, BHs scheduled from
# worker threads. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
swift run GLibDemo
