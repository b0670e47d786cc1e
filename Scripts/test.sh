#!/usr/bin/env bash
# The test command: installs what is missing, fetches the default model (cached), runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/install-deps.sh
swift build --product longheads
# The end-to-end tests run the real default model; fetch it once (verified by sha256, then cached).
.build/debug/longheads model fetch >/dev/null
swift test "$@"
