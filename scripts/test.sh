#!/usr/bin/env bash
# The whole test suite: the Promela models, the Swift tests (debug), the same
# tests under ThreadSanitizer, and every example run to completion.
# Installs what it needs first. AIO_STRESS=1 selects the long stress runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

step() { printf '\n==> %s\n' "$*"; }

if [ -x Models/run.sh ]; then
    step "Models: SPIN verdicts of the notify protocol and its bug variants"
    bash Models/run.sh
fi

step "swift test"
swift test

step "swift test under ThreadSanitizer"
# A TSan report only changes the exit code (66), so the exit code is what counts.
# Separate scratch path: switching sanitizers otherwise rebuilds everything.
swift test --scratch-path .build-tsan --sanitize=thread

step "examples"
swift build --product GLibDemo
timeout 60 swift run --skip-build GLibDemo >/dev/null
echo "GLibDemo ran to completion"
