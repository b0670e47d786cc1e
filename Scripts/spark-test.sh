#!/usr/bin/env bash
# Spark local-mode test of Samples/spark (issue 16): small inputs, the smollm2-135m model.
#  1. a corpus built by Spark tasks (local[2,4]; the first task's first attempt is killed with SIGKILL
#     mid-ingest and retried by Spark) is byte-identical to the one `longheads ingest --corpus` builds
#     (manifest, index, every store's data past the 64-byte prefix that holds its random store id);
#  2. the Spark question job answers exactly as `longheads ask --corpus --questions` (answers, segments, sources);
#  3. the Spark filter job's output files equal `longheads filter`'s, byte for byte (a "\r\n" line and a
#     file without a final newline included).
# Needs: a built longheads (LONGHEADS_BIN, default .build/debug/longheads), Java 17, and a Python with
# pyspark (SPARK_PYTHON, default python3; e.g. python3 -m venv V && V/bin/pip install pyspark).
# The model is fetched on first use (LONGHEADS_HOME). Prints "spark-test: ok" and exits 0 on success.
set -euo pipefail
cd "$(dirname "$0")/.."
export LONGHEADS_BIN=${LONGHEADS_BIN:-$PWD/.build/debug/longheads}
PY=${SPARK_PYTHON:-python3}
MODEL=${SPARK_TEST_MODEL:-smollm2-135m}
LH=$LONGHEADS_BIN
"$PY" -c 'import pyspark' || { echo "spark-test: no pyspark in $PY (set SPARK_PYTHON)" >&2; exit 1; }
"$LH" model fetch "$MODEL" >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
t0=$(date +%s)
mkdir -p "$work/docs" "$work/text"
"$PY" - "$work" <<'PY'
import random, sys
w = sys.argv[1]
random.seed(7)
facts = {"harbor.txt": "The harbor master of Velsund is Ada Korvin, appointed in 1902.",
         "orchard.txt": "The orchard at Lindmoor grows the rare grey pear called Mistral.",
         "bridge.txt": "The stone bridge over the Tarn river has eleven arches."}
filler = ["The weather was mild and the roads were quiet that season.", "Many people came to see the market in the spring.",
          "Records from that time are scattered across several archives.", "A small committee met every month to discuss repairs."]
for name, fact in facts.items():
    paras = [" ".join(random.choice(filler) for _ in range(4)) for _ in range(6)]
    paras.insert(3, fact + " " + random.choice(filler))
    open(f"{w}/docs/{name}", "w").write("\n\n".join(paras) + "\n")
open(f"{w}/q.jsonl", "w").write('{"id": "h", "question": "Who is the harbor master of Velsund?"}\n'
                                '{"id": "o", "question": "What pear grows in the orchard at Lindmoor?"}\n'
                                '{"id": "b", "question": "How many arches has the stone bridge over the Tarn?"}\n')
open(f"{w}/text/a.log", "wb").write(b"the dog barked at the mail carrier\ncpu temperature is normal\r\n\n"
                                     b"a puppy chewed the shoe\ndisk usage at 40 percent\nthe cat slept all day\n")
open(f"{w}/text/b.log", "wb").write("my dog loves the park\nbackup finished in 3 minutes\nthe hound howled at night".encode())
PY
docs=("$work"/docs/*.txt)
echo "spark-test: local corpus" >&2
"$LH" ingest --corpus "$work/local" --segment-tokens 200 --model "$MODEL" --progress none "${docs[@]}" > "$work/local.jsonl"
echo "spark-test: Spark corpus (local[2,4], first attempt killed)" >&2
LONGHEADS_SPARK_KILL_FIRST=${SPARK_TEST_KILL_AFTER:-1.5} "$PY" Samples/spark/ingest_corpus.py --master 'local[2,4]' \
  --corpus "$work/spark" --segment-tokens 200 --model "$MODEL" "${docs[@]}" > "$work/spark.json" 2> "$work/spark-ingest.log" \
  || { tail -20 "$work/spark-ingest.log" >&2; exit 1; }
grep -q "first attempt killed" "$work/spark-ingest.log" || { echo "spark-test: the kill hook did not run" >&2; exit 1; }
"$PY" - "$work/local" "$work/spark" <<'PY'
import os, sys
a, b = sys.argv[1:]
def read(p): return open(p, "rb").read()
assert read(f"{a}/manifest") == read(f"{b}/manifest"), "manifests differ"
assert read(f"{a}/index") == read(f"{b}/index"), "indexes differ"
names = sorted(os.listdir(f"{a}/segments"))
assert names == sorted(os.listdir(f"{b}/segments")), "segment sets differ"
for n in names:
    if n.endswith(".seg"):
        continue
    for f in ("pages", "pagetable", "tokens", "features"):
        assert read(f"{a}/segments/{n}/{f}")[64:] == read(f"{b}/segments/{n}/{f}")[64:], f"segment {n} {f} differs"
print(f"spark-test: corpora identical ({len(names) // 2} segments)", file=sys.stderr)
PY
echo "spark-test: questions" >&2
"$LH" ask --corpus "$work/local" --questions "$work/q.jsonl" --model "$MODEL" --max-tokens 16 > "$work/local-answers.jsonl"
"$PY" Samples/spark/ask_corpus.py --master 'local[2]' --corpus "$work/spark" --questions "$work/q.jsonl" --out "$work/spark-answers.jsonl" \
  --model "$MODEL" --ask-arg=--max-tokens --ask-arg=16 2> "$work/spark-ask.log" || { tail -20 "$work/spark-ask.log" >&2; exit 1; }
"$PY" - "$work/local-answers.jsonl" "$work/spark-answers.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 3, (len(a), len(b))
for x, y in zip(a, b):
    for k in ("id", "answer", "segment", "sources"):
        assert x[k] == y[k], f"{k}: {x[k]!r} != {y[k]!r}"
print("spark-test: answers identical:", [x["answer"] for x in a], file=sys.stderr)
PY
echo "spark-test: filter" >&2
Q="Is this line about a dog?"
mkdir -p "$work/local-filter"
for f in "$work"/text/*; do
  "$LH" filter --model "$MODEL" --threshold 0.12 "$Q" < "$f" > "$work/local-filter/$(basename "$f")"
done
"$PY" Samples/spark/filter_dir.py --master 'local[2]' --input "$work/text" --output "$work/spark-filter" --model "$MODEL" \
  --question "$Q" --partitions 3 --filter-arg=--threshold --filter-arg=0.12 > /dev/null 2> "$work/spark-filter.log" \
  || { tail -20 "$work/spark-filter.log" >&2; exit 1; }
diff -r "$work/local-filter" "$work/spark-filter"
# SmolLM2-135M's P(yes) on these lines is 0.10–0.19: at 0.12 some lines pass and some do not.
passed=$(cat "$work"/local-filter/* | wc -l)
(( passed > 0 && passed < 9 )) || { echo "spark-test: $passed lines passed: the filter check is vacuous" >&2; exit 1; }
echo "spark-test: filter outputs identical ($(cat "$work"/local-filter/* | wc -l) lines passed)" >&2
echo "spark-test: ok ($(( $(date +%s) - t0 )) s)"
