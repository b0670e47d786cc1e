import Foundation
import Testing
import GGUF
import Tokenization

/// One line of Fixtures/tokenizer.jsonl: llama.cpp's ids for `text` on the default model (no BOS,
/// special-token strings not parsed).
struct ReferenceCase: Decodable, Sendable, CustomTestStringConvertible {
    let name: String
    let text: String
    let ids: [Int32]
    var testDescription: String { name }
}

enum Fixtures {
    static let referenceCases: [ReferenceCase] = {
        guard let dir = Bundle.module.url(forResource: "Fixtures", withExtension: nil),
              let data = try? Data(contentsOf: dir.appendingPathComponent("tokenizer.jsonl"))
        else { return [] }
        let dec = JSONDecoder()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            try? dec.decode(ReferenceCase.self, from: Data($0.utf8))
        }
    }()
}

/// The default model (SmolLM2-135M-Instruct Q4_1), looked up where the project keeps it; tests that need
/// its vocabulary are skipped when it is absent.
enum DefaultModel {
    static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    static let path: String? = {
        let env = ProcessInfo.processInfo.environment
        var candidates = [String]()
        if let p = env["LONGHEADS_MODEL"], !p.isEmpty { candidates.append(p) }
        if let h = env["LONGHEADS_HOME"], !h.isEmpty { candidates.append(h + "/models/" + fileName) }
        let home = env["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        candidates.append(home + "/.cache/longheads/models/" + fileName)
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }()

    static var available: Bool { path != nil }

    /// Loaded once per test process: parsing 49k tokens and merges is the slow part.
    static let tokenizer: Tokenizer? = {
        guard let path, let file = try? GGUFFile(path: path) else { return nil }
        return try? Tokenizer(gguf: file)
    }()
}

