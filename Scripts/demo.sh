#!/usr/bin/env bash
# The main job on the default model: batch question answering over a long document, prefilled once.
# Builds longheads (release); the model is fetched on first use.
#
#   Scripts/demo.sh                     # a generated 16k-token contract and its 20 questions (Samples/)
#   Scripts/demo.sh FILE Q.jsonl        # your document and questions ({"id": …, "question": …} per line)
#
# Prints one JSON line per question (id, answer, seconds, sources = cited byte ranges of FILE);
# progress and timings go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/install-deps.sh
swift build -c release --product longheads >&2
lh=.build/release/longheads
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ $# -ge 2 ]]; then
  doc=$1 questions=$2
else
  doc=$work/contract.txt questions=$work/questions.jsonl
  python3 Samples/generate.py contract --seed 1 --tokens 16000 --questions "$questions" > "$doc"
  echo "demo: a generated contract of $(wc -c < "$doc") bytes, 20 questions" >&2
fi
$lh ingest "$doc" --store "$work/doc.store" --progress auto >&2
$lh ask --store "$work/doc.store" --questions "$questions" --max-tokens 32
