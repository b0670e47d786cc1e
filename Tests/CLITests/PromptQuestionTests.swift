import Foundation
import GGUF
import LongHeads
import Model
import Pipeline
import TestSupport
import Testing
import Tokenization

/// Issue 15, part 6: a long prompt's last paragraph is its question (`PromptQuestion`), and `generate`
/// reads it as `ask` reads one, so that its words retrieve a chunk.
@Suite struct PromptQuestionTests {
    /// The byte offset of the question, as the text after it.
    func question(_ text: String) -> String? {
        PromptQuestion.start(in: text).map { String(decoding: Array(text.utf8)[$0...], as: UTF8.self) }
    }

    @Test func lastParagraphIsTheQuestion() {
        #expect(question("Some material. More of it.\nWhat is the answer? The answer is") == "\nWhat is the answer? The answer is")
        // Blank lines and trailing white space: the question keeps the line breaks before it.
        #expect(question("Material.\n\nFirst question line.\n\n  Where is it?  \n") == "\n\n  Where is it?  \n")
        // A long last paragraph: only its last three sentences.
        #expect(question("Intro.\nOne. Two! Three? Four. Five") == " Three? Four. Five")
        // No line break, few sentences: the question would be everything, so there is none.
        #expect(question("Just one paragraph. With two sentences.") == nil)
        #expect(question("") == nil)
        #expect(question("\n\n   \n") == nil)
        // A paragraph without sentence ends is cut at a space within the last `maxBytes` bytes.
        let words = (0..<1000).map { "w\($0)" }.joined(separator: " ")
        let q = question("Material.\n" + words)!
        #expect(q.utf8.count <= PromptQuestion.maxBytes && q.hasSuffix("w999") && q.first == " ")
    }

    /// The question's first token in the prompt's tokens: where the material's tokens end.
    @Test func questionStartInTokens() throws {
        let modelPath = try TinyModel().write(name: "pq-start")
        defer { try? FileManager.default.removeItem(atPath: modelPath) }
        let file = try GGUFFile(path: modelPath)
        let p = DocumentPipeline(model: try LlamaModel(file: file, threads: 1, maxBatch: 16), tokenizer: try Tokenizer(gguf: file),
                                 budgetBytes: 1 << 20)
        let text = "the cart rolled past the mill.\nwhere did it roll?"
        let ids = p.promptTokens(text, chat: false)
        let start = try #require(p.questionStart(ofPrompt: text, chat: false, ids: ids))
        #expect(p.tokenizer.decode(Array(ids[start...])) == "\nwhere did it roll?")
        #expect(p.questionStart(ofPrompt: "no question here", chat: false, ids: p.promptTokens("no question here", chat: false)) == nil)
    }

    /// `generate` on a long prompt: the last paragraph is the retrieval query and retrieves the chunk
    /// holding its rare words; `--no-retrieval` gives what the prompt gives read without a question (the
    /// path `generate` took before).
    @Test func generateRetrievesWithTheLastParagraph() throws {
        let modelPath = try TinyModel().write(name: "pq-generate")
        let dir = try scratchDirectory("pq-generate")
        defer { for p in [modelPath, dir] { try? FileManager.default.removeItem(atPath: p) } }
        // Lowercase filler (the tiny tokenizer is byte-level: a byte is a token), capitals only in the needle.
        var words = (0..<90).map { "the cart rolled past mill \($0 % 7 == 0 ? "and" : "or") stood" }
        words.insert("QZX", at: 60)
        let text = words.joined(separator: " ") + "\nWhat is QZX?"
        let promptFile = dir + "/prompt.txt"
        try text.write(toFile: promptFile, atomically: true, encoding: .utf8)
        let common = ["generate", "--model", modelPath, "--prompt-file", promptFile, "--chunk", "16", "--attention", "64",
                      "--max-tokens", "6", "--verbose"]
        let r = try longheads(common, env: ["TMPDIR": dir])
        #expect(r.status == 0, "\(r.stderr)")
        let queryLine = r.stderr.split(separator: "\n").first { $0.hasPrefix("generate: retrieval query:") }
        #expect(queryLine?.hasSuffix(String(reflecting: "\nWhat is QZX?")) == true, "\(r.stderr)")
        // One token per byte: the needle's chunk from its byte offset (no BOS for this model).
        let at = text.utf8.distance(from: text.utf8.startIndex, to: text.range(of: "QZX")!.lowerBound)
        #expect(r.stderr.contains("generate: retrieved chunks [\(at / 16)]") || r.stderr.contains("generate: retrieved chunks [\((at + 2) / 16)]"),
                "\(r.stderr)")

        let plain = try longheads(common + ["--no-retrieval"], env: ["TMPDIR": dir])
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(!plain.stderr.contains("retrieval query"))
        // The same continuation as the library's run of the whole prompt without a question.
        let file = try GGUFFile(path: modelPath)
        let p = DocumentPipeline(model: try LlamaModel(file: file, threads: 2, maxBatch: 16), tokenizer: try Tokenizer(gguf: file),
                                 budgetBytes: 16 << 20)
        let ids = p.promptTokens(text, chat: false)
        let (session, logits) = try p.run(prompt: ids, storeAt: dir + "/lib", modelFile: file,
                                          parameters: .init(chunkSize: 16, attentionLength: 64), precision: .default, chat: false)
        var expected = ""
        _ = try p.answer(session: session, first: logits, maxTokens: 6, sampling: .greedy) { expected += $0 }
        #expect(plain.stdout == expected + "\n")
    }

    /// The library's long `generate` (`DocumentPipeline.generateLong`): with the last paragraph as the question,
    /// it retrieves a chunk, reported before the continuation; without a question, it is the plain run.
    @Test func generateLongReadsTheQuestion() throws {
        let modelPath = try TinyModel().write(name: "pq-long")
        let dir = try scratchDirectory("pq-long")
        defer { for p in [modelPath, dir] { try? FileManager.default.removeItem(atPath: p) } }
        let file = try GGUFFile(path: modelPath)
        let p = DocumentPipeline(model: try LlamaModel(file: file, threads: 2, maxBatch: 16), tokenizer: try Tokenizer(gguf: file),
                                 budgetBytes: 16 << 20)
        var words = (0..<90).map { "the cart rolled past mill \($0 % 7 == 0 ? "and" : "or") stood" }
        words.insert("QZX", at: 60)
        let text = words.joined(separator: " ") + "\nWhat is QZX?"
        let ids = p.promptTokens(text, chat: false)
        let parameters = LongHeadsParameters(chunkSize: 16, attentionLength: 64)
        var read: LongGeneration?, pieces = ""
        let g = try p.generateLong(ids: ids, questionStart: p.questionStart(ofPrompt: text, chat: false, ids: ids), chat: false,
                                   storeAt: dir + "/a", parameters: parameters,
                                   precision: .default, maxTokens: 6, sampling: .greedy, onRead: { read = $0 }) { pieces += $0 }
        #expect(g.questionStart == ids.count - "\nWhat is QZX?".utf8.count && read?.questionStart == g.questionStart)
        #expect(read?.tokens.isEmpty == true && g.sharedChunks.count == 1 && g.tokens.count <= 6)
        #expect(p.tokenizer.decode(g.tokens) == pieces)
        let plain = try p.generateLong(ids: ids, questionStart: nil, chat: false, storeAt: dir + "/b", parameters: parameters,
                                       precision: .default, maxTokens: 6, sampling: .greedy) { _ in }
        let (session, logits) = try p.run(prompt: ids, storeAt: dir + "/c", modelFile: file, parameters: parameters, precision: .default, chat: false)
        #expect(plain.questionStart == nil && plain.sharedChunks.isEmpty)
        #expect(try p.answer(session: session, first: logits, maxTokens: 6, sampling: .greedy) { _ in } == plain.tokens)
    }
}
