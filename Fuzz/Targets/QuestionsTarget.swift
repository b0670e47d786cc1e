// libFuzzer target: the `ask --questions` JSONL reader (Pipeline/Questions.swift) on arbitrary bytes.
// Checked, besides "no trap": only QuestionsError is thrown; every question read is non-empty and
// names a line of the input.
#if !FUZZING
import Pipeline
#endif

#if FUZZING
/// libFuzzer's entry point (Scripts/fuzz.sh builds with -D FUZZING).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEntry(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt { fuzzQuestions(data, size) }
#endif

/// One fuzz input; returns 0 unless it traps.
@discardableResult
func fuzzQuestions(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    do {
        let qs = try parseQuestions(bytes, name: "fuzz.jsonl")
        let lines = bytes.filter { $0 == 0x0A }.count + 1
        for q in qs { precondition(q.line >= 1 && q.line <= lines && !q.text.isEmpty, "bad question \(q.line)") }
    } catch is QuestionsError {
    } catch {
        preconditionFailure("unexpected error \(error)")
    }
    return 0
}
