#!/usr/bin/env bash
# The main demo: GLibDaemon --demo. A D-Bus service on GIO's GDBus runs in a
# GMainLoop with an AioContext attached; its slow methods run on the
# context's thread pool. It starts a private session bus (dbus-daemon), calls
# its own methods as a client, prints each reply and check, shuts itself down
# with SIGTERM while a call is in flight, and exits 0.
# Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
swift run --enable-all-traits GLibDaemon --demo
