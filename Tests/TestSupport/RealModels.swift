import Foundation
import ModelCache

/// Real models the end-to-end tests run on when they are at hand (they are skipped otherwise).
public enum RealModels {
    /// Qwen2.5-Coder-0.5B-Instruct: `$LONGHEADS_QWEN_MODEL` if that file exists, else the verified copy in
    /// the model cache (`longheads model fetch qwen2.5-coder-0.5b`; Scripts/test.sh fetches it).
    public static let qwen25Coder05B: String? = {
        if let p = ProcessInfo.processInfo.environment["LONGHEADS_QWEN_MODEL"], FileManager.default.fileExists(atPath: p) { return p }
        return ModelCache().cachedPath(of: .qwen25Coder05B)
    }()
}

/// How closely two runs' logits agree, row by row (`[rows, vocab]` each): the largest absolute difference
/// and the number of rows whose top-1 token is the same.
public func logitAgreement(_ got: [Float], _ expected: [Float], vocab V: Int) -> (worst: Float, topAgree: Int) {
    precondition(got.count == expected.count && V > 0 && got.count % V == 0)
    var worst: Float = 0, topAgree = 0
    for i in 0..<got.count / V {
        let a = got[i * V..<(i + 1) * V], b = expected[i * V..<(i + 1) * V]
        worst = max(worst, zip(a, b).map { abs($0 - $1) }.max()!)
        if a.indices.max(by: { a[$0] < a[$1] }) == b.indices.max(by: { b[$0] < b[$1] }) { topAgree += 1 }
    }
    return (worst, topAgree)
}
