#!/bin/bash
# usage: Scripts/robustness-cases.sh BINARY [MODEL]: runs the CLI cases of Docs/ROBUSTNESS.md in a scratch
# directory under /tmp and prints "case | status | first stderr line" for each.
set -u
LH=$(cd "$(dirname "$1")" && pwd)/$(basename "$1"); M=${2:-$(ls ~/.cache/longheads/models/*.gguf | head -1)}
W=$(mktemp -d /tmp/longheads-robustness.XXXX); cd $W; export TMPDIR=$W/tmp; mkdir -p $TMPDIR
echo "The quick brown fox jumps over the lazy dog." > doc.txt; mkdir D
printf 'Hello w\xc3\x28rld' > bad.txt
r() { local name="$1"; shift; ( eval "$@" ) > out.txt 2> err.txt; local s=$?; echo "$name | $s | $(grep -v '^$' err.txt | grep -v '^0x' | head -1 | cut -c1-110)"; }
r "ingest doc.txt --store x" "timeout 120 $LH ingest doc.txt --store x --model $M --progress none"
r "ingest D --store s" "timeout 60 $LH ingest D --store s --model $M"
r "ask D q" "timeout 60 $LH ask D q --model $M"
r "summarize D" "timeout 60 $LH summarize D --model $M"
r "generate --prompt-file D" "timeout 60 $LH generate --prompt-file D --model $M"
r "ingest - <&-" "timeout 60 $LH ingest - --store s2 --model $M <&-"
r "tokenize - <&-" "timeout 60 $LH tokenize - --model $M <&-"
r "tokenize hi >/dev/full" "timeout 60 $LH tokenize hi --model $M > /dev/full"
r "tokenize hi >&-" "timeout 60 $LH tokenize hi --model $M >&-"
r "ingest doc >/dev/full" "timeout 120 $LH ingest doc.txt --store f --model $M --progress none > /dev/full"
r "generate >/dev/full" "timeout 120 $LH generate --prompt hi --max-tokens 3 --model $M > /dev/full"
r "bench prefill --repetitions 0" "timeout 60 $LH bench prefill --repetitions 0 --model $M"
r "bench prefill --tokens 0" "timeout 60 $LH bench prefill --tokens 0 --model $M"
r "ingest --memory-budget 2^44" "timeout 120 $LH ingest doc.txt --store mb --memory-budget 17592186044416 --model $M --progress none"
r "ingest bad.txt" "timeout 120 $LH ingest bad.txt --store b --model $M --progress none"
r "ingest bad.txt (retry)" "timeout 120 $LH ingest bad.txt --store b --model $M --progress none"
echo "tmp left: $(ls $TMPDIR | wc -l)"
# An interrupted generate on a long prompt: its temporary store must be gone.
python3 -c "print('The quick brown fox jumps over the lazy dog. ' * 3000)" > long.txt
mkdir -p gen-tmp
TMPDIR=$W/gen-tmp $LH generate --prompt-file long.txt --model $M --max-tokens 50 > /dev/null 2>&1 &
P=$!; sleep 6; kill -TERM $P; wait $P
echo "generate long prompt, SIGTERM after 6 s | $? | left in TMPDIR: $(ls gen-tmp | wc -l) entries, $(du -sh gen-tmp | cut -f1)"
rm -rf "$W"
