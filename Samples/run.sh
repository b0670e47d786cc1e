#!/usr/bin/env bash
# Runs the jobs of Samples/README.md end to end and keeps every output in OUT (default /tmp/longheads-samples).
# Usage: Samples/run.sh [contract|summarize|filter|all]   (LONGHEADS: the binary; default the release build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LH=${LONGHEADS:-$here/../.build/release/longheads}
OUT=${OUT:-/tmp/longheads-samples}
mkdir -p "$OUT"
cd "$OUT"
job=${1:-all}
t() { /usr/bin/time -f "%e s elapsed, peak RSS %M KiB" "$@"; }

if [[ $job == contract || $job == all ]]; then
  # Batch QA: one 64k-token contract ingested once, 20 questions answered from the store.
  python3 "$here/generate.py" contract --seed 1 --tokens 64000 --questions questions.jsonl > contract.txt
  rm -rf contract.store
  t "$LH" ingest contract.txt --store contract.store 2> ingest.err > ingest.json
  tail -1 ingest.err
  t "$LH" ask --store contract.store --questions questions.jsonl --max-tokens 32 --verbose > answers.jsonl 2> ask.err
  tail -1 ask.err
  python3 "$here/evaluate.py" ask questions.jsonl answers.jsonl | tail -1
  # One question about a file, no store kept: ingested into a temporary store, answered, removed.
  python3 "$here/generate.py" logs --seed 3 --lines 150 --incident incident-small.json > logs-small.txt
  t "$LH" ask logs-small.txt "Which service failed, and why?" --max-tokens 60 --verbose
fi

if [[ $job == summarize || $job == all ]]; then
  # Summarize: a day of server logs cut to ~32k tokens, read whole through LongHeads.
  python3 "$here/generate.py" logs --seed 1 --lines 640 --incident incident.json > logs.txt
  t "$LH" summarize logs.txt --max-tokens 160 --verbose > summary.txt 2> summarize.err
  tail -1 summarize.err
  cat summary.txt
  # Ingested once, asked again in seconds with another instruction.
  rm -rf logs.store
  t "$LH" ingest logs.txt --store logs.store 2> logs-ingest.err > logs-ingest.json
  tail -1 logs-ingest.err
  t "$LH" summarize --store logs.store --max-tokens 100 --instruction "What went wrong in the logs above? Answer in a few sentences."
  if [[ -d contract.store ]]; then t "$LH" summarize --store contract.store --max-tokens 120; fi
  # Sections: a 4.6k-token contract with Markdown headings, one line per article, then the overall summary.
  python3 "$here/generate.py" contract --seed 1 --tokens 4000 --markdown > contract-md.txt
  t "$LH" summarize contract-md.txt --sections --max-tokens 40
fi

if [[ $job == filter || $job == all ]]; then
  # Filter: 10,000 support tickets, ~1 in 10 asks for a refund; every score kept (--threshold 0 --score) so that
  # precision and recall can be read at any threshold; the default threshold is 0.5.
  python3 "$here/generate.py" records --seed 1 --lines 10000 --labels labels.txt > records.txt
  t "$LH" filter "Does the customer want a refund?" --score --threshold 0 --verbose < records.txt > scored.txt 2> filter.err
  tail -1 filter.err
  for th in 0.5 0.317 0.3 0.25; do python3 "$here/evaluate.py" filter records.txt labels.txt scored.txt --threshold $th; done
fi
