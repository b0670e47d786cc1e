#!/usr/bin/env bash
# The unit tests under AddressSanitizer, and the thread pool and the
# kernels that use it under ThreadSanitizer: Scripts/sanitize.sh [asan|tsan]...  (default: both)
# Each sanitizer builds into its own scratch directory (.build/asan, .build/tsan), so the normal debug
# build is not invalidated. Skipped under ASan: the end-to-end suites that run the CLI binary or the
# real model (CLITests, ReferenceTests: minutes of instrumented inference, and the CLI paths they
# reach are the same library code the unit tests cover) and the opt-in benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=("$@")
[ ${#PASSES[@]} -eq 0 ] && PASSES=(asan tsan)
# Swift's own backtracer would turn a sanitizer's report into a second crash report; halt on the first.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1}
# UBSan: swiftc refuses -sanitize=undefined on Linux (6.3), so there is no UBSan pass.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1}
for p in "${PASSES[@]}"; do
    start=$(date +%s)
    case $p in
    asan) swift test --scratch-path .build/asan --sanitize=address \
              --skip 'CLITests\.|ReferenceTests|benchmarks' ;;
    tsan) swift test --scratch-path .build/tsan --sanitize=thread \
              --filter 'ThreadPool|Matmul|AttentionKernelTests|TinyModelForwardTests' ;;
    *) echo "sanitize.sh: unknown pass '$p' (asan, tsan)" >&2; exit 64 ;;
    esac
    echo "sanitize $p: passed in $(( $(date +%s) - start ))s" >&2
done
