#!/usr/bin/env bash
# Resume check: an ingest killed with kill -9 at random moments and resumed each time must give the same
# store as an uninterrupted ingest — the same pages, page table, chunk summaries and tokens, byte for byte
# (each file after its 64-byte header, which holds the store's random id) — and the same answers.
#
#   Samples/resume-check.sh [--tokens N] [--kills K] [--questions Q] [--model GGUF] [--keep DIR]
#
# Uses the `longheads` in $LONGHEADS, else on PATH, else .build/release/longheads. Prints PASS or FAIL
# (exit 0 / 1). The default (8,000 tokens, 10 kills, 5 questions) takes about five minutes with the default model.
set -euo pipefail

tokens=8000
kills=10
questions=5
model=()
keep=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --tokens) tokens="$2"; shift 2 ;;
        --kills) kills="$2"; shift 2 ;;
        --questions) questions="$2"; shift 2 ;;
        --model) model=(--model "$2"); shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "resume-check: unknown argument $1" >&2; exit 64 ;;
    esac
done

bin="${LONGHEADS:-$(command -v longheads || true)}"
[[ -n "$bin" ]] || bin="$(dirname "$0")/../.build/release/longheads"
[[ -x "$bin" ]] || { echo "resume-check: no longheads binary (build with: swift build -c release, or set LONGHEADS)" >&2; exit 69; }

work="${keep:-$(mktemp -d "${TMPDIR:-/tmp}/resume-check.XXXXXX")}"
mkdir -p "$work"
[[ -n "$keep" ]] || trap 'rm -rf "$work"' EXIT
doc="$work/document.txt"

# A document of about $tokens tokens (about 2.5 bytes per token: the default model's tokenizer splits
# numbers into digits): varied log-like paragraphs, with five facts at different depths for the questions.
awk -v bytes=$((tokens * 5 / 2)) 'BEGIN {
    srand(7)
    split("the a one every each some that this", det, " ")
    split("server client request worker queue cache database scheduler gateway replica backup index", noun, " ")
    split("accepted rejected retried delayed logged flushed rotated compacted restarted throttled", verb, " ")
    split("quickly slowly twice again silently eventually", adv, " ")
    fact[1] = "The vault code for the north office is 4721."
    fact[2] = "Maria Okafor was promoted to head of the platform team in March."
    fact[3] = "The backup window moved from 02:00 to 03:30 UTC after the incident."
    fact[4] = "The red kettle is kept in the second cupboard on the left."
    fact[5] = "Project Heron was cancelled because the budget ran out."
    n = 0; f = 1
    while (n < bytes) {
        p = ""
        for (s = 0; s < 4 + int(rand() * 5); s++) {
            line = sprintf("At %02d:%02d:%02d %s %s %s %d requests %s.", int(rand() * 24), int(rand() * 60), int(rand() * 60),
                           det[1 + int(rand() * 8)], noun[1 + int(rand() * 12)], verb[1 + int(rand() * 10)],
                           int(rand() * 100000), adv[1 + int(rand() * 6)])
            p = p (s ? " " : "") line
        }
        if (f <= 5 && n >= (f - 0.5) * bytes / 5) { p = p " " fact[f]; f++ }
        print p "\n"
        n += length(p) + 2
    }
}' > "$doc"

qs=("What is the vault code for the north office?" "Who was promoted to head of the platform team?"
    "When is the backup window now?" "Where is the red kettle kept?" "Why was Project Heron cancelled?")

echo "resume-check: $(wc -c < "$doc") bytes, $kills kills, $questions questions; longheads: $bin"

# 1. Uninterrupted.
t0=$(date +%s.%N)
"$bin" ingest "$doc" --store "$work/whole" "${model[@]}" --progress none > "$work/whole.json"
full=$(echo "$(date +%s.%N) - $t0" | bc)
echo "uninterrupted ingest: ${full}s"

# 2. Killed at random moments, from stdin, resumed each time. Kill k waits until the store holds a random
#    number of chunks in the k-th of `kills` equal parts of the document, then a random 0-2 s more (so
#    that it lands anywhere in a chunk, not just after a commit), so the kills spread over the ingest.
total=$(sed 's/.*"chunks":\([0-9]*\).*/\1/' "$work/whole.json")
committed() { od -An -t u8 -j 128 -N 8 "$work/killed/header" 2>/dev/null | tr -d ' ' || true; }
delivered=0
for ((k = 0; k < kills; k++)); do
    resume=(); [[ -d "$work/killed" ]] && resume=(--resume)
    target=$(awk -v t="$total" -v k="$k" -v n="$kills" 'BEGIN { srand(1000 + k); printf "%d", (k + rand()) * t / (n + 1) }')
    extra=$(awk -v k="$k" 'BEGIN { srand(2000 + k); printf "%.2f", rand() * 2 }')
    "$bin" ingest - --store "$work/killed" "${resume[@]}" "${model[@]}" --progress none < "$doc" > /dev/null 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null && [[ "$(committed)" == "" || "$(committed)" -lt "$target" ]]; do sleep 0.1; done
    sleep "$extra"
    if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        delivered=$((delivered + 1))
        echo "kill $((k + 1)): after chunk $target of $total + ${extra}s; $(committed) chunks committed"
    else
        wait "$pid" || true
        echo "kill $((k + 1)): the ingest had already finished"
        break
    fi
done
"$bin" ingest - --store "$work/killed" --resume "${model[@]}" --progress none < "$doc" > "$work/killed.json"
echo "final resume: $(cat "$work/killed.json")"

# 3. Compare the stores and the answers.
fail=0
for f in pages pagetable features tokens; do
    if cmp -s -i 64:64 "$work/whole/$f" "$work/killed/$f"; then
        echo "  $f: identical ($(wc -c < "$work/whole/$f") bytes)"
    else
        echo "  $f: DIFFERENT"; fail=1
    fi
done
for ((q = 0; q < questions && q < ${#qs[@]}; q++)); do
    a=$("$bin" ask --store "$work/whole" "${model[@]}" --max-tokens 24 "${qs[$q]}")
    b=$("$bin" ask --store "$work/killed" "${model[@]}" --max-tokens 24 "${qs[$q]}")
    if [[ "$a" == "$b" ]]; then
        echo "  Q: ${qs[$q]}  A: ${a//$'\n'/ }  (same)"
    else
        echo "  Q: ${qs[$q]}  DIFFERENT: '${a//$'\n'/ }' vs '${b//$'\n'/ }'"; fail=1
    fi
done
if [[ $fail == 0 && $delivered -gt 0 ]]; then
    echo "PASS: $delivered kill -9s, resumed each time; pages and $questions answers identical to the uninterrupted ingest"
else
    echo "FAIL ($delivered kills delivered)"
    exit 1
fi
