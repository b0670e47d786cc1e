#!/usr/bin/env bash
# Cost of a selection policy against the paper's (Docs/SELECTION.md, issue 4): alternates
# `bench ingest --tokens 7300` (an 8,256-token store, then one question + 16 answer tokens) under the two
# policies, ROUNDS times, one JSON line per run on stdout. Quote medians: the machine may be shared.
# Usage: Scripts/policy-cost.sh [POLICY] [ROUNDS]     (LONGHEADS: the binary; default the release build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LH=${LONGHEADS:-$here/../.build/release/longheads}
policy=${1:-quest-lexical}
rounds=${2:-3}
for r in $(seq 1 "$rounds"); do
  for p in paper "$policy"; do
    "$LH" bench ingest --tokens 7300 --policy "$p" 2>/dev/null | python3 -c "
import json, sys
o = json.loads(sys.stdin.read())
keys = ['tokens', 'tokens_per_second', 'cpu_ms_per_token_ingest', 'decode_ms_per_token_warm', 'decode_ms_per_token_cold',
        'ask_seconds_warm', 'peak_rss_bytes_ingest', 'peak_rss_bytes', 'store_bytes_per_token', 'retrieval_seconds']
print(json.dumps(dict(policy='$p', round=$r, **{k: o[k] for k in keys})))"
  done
done
