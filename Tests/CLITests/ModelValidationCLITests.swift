import Foundation
import GGUF
import TestSupport
import Testing

/// A model whose metadata is nonsense is refused with exit 70 and one line naming the key (issue 14).
@Suite struct ModelValidationCLITests {
    @Test func nonsenseRopeBaseExits70NamingTheKey() throws {
        var (w, _) = TinyModel().gguf()
        w.set("llama.rope.freq_base", .float32(0))
        let p = temp("rope0.gguf")
        try w.write(to: p)
        defer { try? FileManager.default.removeItem(atPath: p) }
        expectCleanFailure(try longheads(["generate", "--model", p, "--prompt", "hi"]), code: 70, mentions: "llama.rope.freq_base")
    }

    @Test func overlappingTensorsExit70NamingThem() throws {
        var (w, _) = TinyModel().gguf()
        w.offsetOverrides["output_norm.weight"] = 0
        let p = temp("overlap.gguf")
        try w.write(to: p)
        defer { try? FileManager.default.removeItem(atPath: p) }
        expectCleanFailure(try longheads(["generate", "--model", p, "--prompt", "hi"]), code: 70, mentions: "output_norm.weight")
    }
}
