#!/usr/bin/env bash
# Runs each libFuzzer target for SECONDS (default 60): Scripts/fuzz.sh [SECONDS] [TARGET...]
# Targets: gguf (reader + model validation + tokenizer from metadata), tokenizer (arbitrary text),
# kvstore (store decoders), records (filter's record splitter), questions (ask --questions JSONL). Each is compiled with `swiftc -sanitize=fuzzer,address` straight from the
# module sources (Fuzz/Targets/*.swift holds the entry points) into .build/fuzz.
# Seeds: Fuzz/Corpus/TARGET (in the repo); the corpus grown by a run stays in .build/fuzz/corpus.
# A crash (trap, ASan report, timeout, out-of-memory) fails the script; the input that caused it
# is copied to Tests/FuzzRegressions/TARGET/, which the unit tests replay (FuzzRegressionTests).
# LONGHEADS_FUZZ_MODEL=path.gguf makes the tokenizer target use that model's tokenizer.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(gguf tokenizer kvstore)
    # The filter's record splitter and the questions reader, once they are pure functions in Pipeline.
    [ -f Sources/Pipeline/Records.swift ] && TARGETS+=(records)
    [ -f Sources/Pipeline/Questions.swift ] && [ -f Sources/Pipeline/Records.swift ] && TARGETS+=(questions)
fi

OUT=.build/fuzz
mkdir -p "$OUT"
SAN=(-sanitize=fuzzer,address)
SWIFT=(swiftc -swift-version 6 -parse-as-library -O -g "${SAN[@]}" -D FUZZING -I "$OUT")

# A library module from module sources: $1 name, rest sources (built once per run).
declare -A BUILT=()
module() {
    local name=$1; shift
    [ -n "${BUILT[$name]:-}" ] && return 0
    BUILT[$name]=1
    "${SWIFT[@]}" -wmo -emit-library -static -module-name "$name" -emit-module-path "$OUT/$name.swiftmodule" \
        -o "$OUT/lib$name.a" "$@"
}

build() {
    case $1 in
    gguf)
        module GGUF Sources/GGUF/*.swift
        module Tokenization Sources/Tokenization/*.swift
        # The model's config and whole-file validation need only GGUF: compiled with the entry point.
        "${SWIFT[@]}" -module-name FuzzGGUF Fuzz/Targets/GGUFTarget.swift Sources/Model/Config.swift \
            Sources/Model/ModelValidation.swift "$OUT/libGGUF.a" "$OUT/libTokenization.a" -o "$OUT/fuzz-gguf" ;;
    tokenizer)
        module GGUF Sources/GGUF/*.swift
        module Tokenization Sources/Tokenization/*.swift
        "${SWIFT[@]}" -module-name FuzzTokenizer Fuzz/Targets/TokenizerTarget.swift \
            "$OUT/libGGUF.a" "$OUT/libTokenization.a" -o "$OUT/fuzz-tokenizer" ;;
    kvstore)
        # The entry point is compiled into the KVStore module to reach its internal record decoders.
        mkdir -p "$OUT/CStoreSupport"
        printf 'module CStoreSupport {\n    header "%s"\n    export *\n}\n' \
            "$PWD/Sources/CStoreSupport/include/cstoresupport.h" > "$OUT/CStoreSupport/module.modulemap"
        clang -c -O2 -g -fsanitize=fuzzer-no-link,address -I Sources/CStoreSupport/include \
            Sources/CStoreSupport/support.c -o "$OUT/cstoresupport.o"
        "${SWIFT[@]}" -module-name KVStore -I Sources/CLZ4 -I "$OUT/CStoreSupport" \
            Sources/KVStore/*.swift Fuzz/Targets/KVStoreTarget.swift "$OUT/cstoresupport.o" -llz4 -o "$OUT/fuzz-kvstore" ;;
    records)
        "${SWIFT[@]}" -module-name FuzzRecords Fuzz/Targets/RecordsTarget.swift Sources/Pipeline/Records.swift -o "$OUT/fuzz-records" ;;
    questions)
        "${SWIFT[@]}" -module-name FuzzQuestions Fuzz/Targets/QuestionsTarget.swift Sources/Pipeline/Questions.swift \
            Sources/Pipeline/Records.swift -o "$OUT/fuzz-questions" ;;
    *) echo "fuzz.sh: unknown target '$1' (gguf, tokenizer, kvstore, records, questions)" >&2; exit 64 ;;
    esac
}

failed=0
for t in "${TARGETS[@]}"; do
    start=$(date +%s)
    # The sanitizer runtime's linker warnings are noise: the build log is shown only if the build fails.
    if ! build "$t" >"$OUT/$t.build.log" 2>&1; then cat "$OUT/$t.build.log" >&2; exit 1; fi
    built=$(date +%s)
    corpus="$OUT/corpus/$t"
    artifacts="$OUT/artifacts/$t"
    mkdir -p "$corpus" "$artifacts" "Tests/FuzzRegressions/$t"
    rm -f "$artifacts"/*
    log="$OUT/$t.log"
    # -timeout: an input taking 10 s is a hang; -rss_limit_mb: a runaway allocation is a finding too.
    # -detect_leaks=0: LeakSanitizer misreads pointers that Swift stores with enum tag bits in their
    # spare high bits (a tokenizer held in a global was reported as leaked).
    set +e
    # The kept crash inputs are read as a corpus too, so each is replayed under ASan first. Seed 0 is
    # libFuzzer's random seed; CI sets LONGHEADS_FUZZ_SEED so that a run explores what the same run did here.
    # Without Swift's own backtracer a runtime trap reaches libFuzzer as the crash it is.
    ASAN_OPTIONS=detect_leaks=0 SWIFT_BACKTRACE=enable=no "$OUT/fuzz-$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -detect_leaks=0 -max_len=65536 \
        -seed="${LONGHEADS_FUZZ_SEED:-0}" \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "Fuzz/Corpus/$t" "Tests/FuzzRegressions/$t" >"$log" 2>&1 &
    pid=$!
    wait $pid
    rc=$?
    # The kvstore target's scratch stores are named by its process id.
    rm -rf /dev/shm/lh-fuzz-kv-$pid-* /tmp/lh-fuzz-kv-$pid-*
    set -e
    execs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "$log" | head -1 | grep -o "[0-9]*$" || echo "?")
    echo "fuzz $t: exit $rc, $execs execs in ${SECONDS_EACH}s (build $((built - start))s), corpus $(ls "$corpus" | wc -l) inputs"
    if [ $rc -ne 0 ]; then
        failed=1
        grep -m1 -E 'ERROR: |Fatal error|Precondition failed|SUMMARY' "$log" >&2 || tail -5 "$log" >&2
        for a in "$artifacts"/*; do
            [ -e "$a" ] || continue
            cp "$a" "Tests/FuzzRegressions/$t/"
            echo "fuzz $t: crashing input kept as Tests/FuzzRegressions/$t/$(basename "$a") (log: $log)" >&2
        done
    fi
done
exit $failed
