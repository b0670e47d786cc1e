import Foundation
import Generation
import KVStore
import LongHeads
import Model
import Tokenization

/// How a document is summarized (`DocumentPipeline.summarize`, `DocumentSession.summarize`).
public struct SummaryOptions: Sendable {
    /// The default request. "Summarize the text above in a few sentences." made SmolLM2-135M continue a log
    /// file instead of describing it; this wording gets prose (Samples/README.md).
    public static let defaultInstruction = "Write a short summary of the text above."

    /// What is asked after the document.
    public var instruction: String
    /// Most tokens per summary.
    public var maxTokens: Int
    /// Decoding: greedy with a repetition penalty by default (greedy decoding of a small model loops without it).
    public var sampling: SamplingParameters
    /// LongHeads parameters of a document longer than plain attention takes.
    public var parameters: LongHeadsParameters
    /// Without headings, sections are parts of this many tokens (`summarizeSections`).
    public var sectionTokens: Int

    /// Options of a summary.
    public init(instruction: String = defaultInstruction, maxTokens: Int = 160, repeatPenalty: Float = 1.3,
                parameters: LongHeadsParameters = .default, sectionTokens: Int = 768) {
        self.instruction = instruction
        self.maxTokens = maxTokens
        var s = SamplingParameters.greedy
        s.repeatPenalty = repeatPenalty
        sampling = s
        self.parameters = parameters
        self.sectionTokens = sectionTokens
    }
}

/// A summary of a document, or of its sections and then the whole.
public struct Summary: Codable, Sendable, Equatable {
    /// How the document was read.
    public enum Reading: String, Codable, Sendable {
        /// Plain attention: the prompt fits the attention length.
        case dense
        /// LongHeads over a store.
        case store
    }

    /// One section's summary.
    public struct Section: Codable, Sendable, Equatable {
        /// The section's heading, or "Part N (tokens a-b)".
        public var title: String
        /// Its summary.
        public var text: String
    }

    /// The summary of the whole document.
    public var text: String
    /// Per-section summaries (`summarizeSections`), in document order; empty otherwise.
    public var sections: [Section]
    /// How the whole document was read.
    public var reading: Reading
    /// Tokens ingested into a store (0 when read with plain attention or from an existing store).
    public var ingestedTokens: Int = 0
    /// Seconds of that ingest.
    public var ingestSeconds: Double = 0
    /// Seconds of the whole summary.
    public var seconds: Double
}

/// Runs `body` with the path of a store directory that does not exist yet and is removed afterwards
/// (the CLI's removes itself on signals too).
public typealias TemporaryStoreProvider = (_ label: String, _ body: (String) throws -> Void) throws -> Void

extension DocumentPipeline {
    /// Summarizes the document of `source`: with plain attention if its prompt fits
    /// `options.parameters.beginSelective` (and no `store` is wanted), else through LongHeads, ingested into
    /// `store` (kept) or a temporary store. Only the document's head is read to decide: a document of more
    /// than `beginSelective` × (longest token) bytes has more tokens than plain attention takes and is
    /// streamed into the store without ever being held whole (as `ingest`).
    public func summarize(source: DocumentSource, options: SummaryOptions, store: String? = nil,
                          temporaryStore: TemporaryStoreProvider, progress: (IngestProgress) -> Void = { _ in },
                          onText: (String) throws -> Void) throws -> Summary {
        let clock = ContinuousClock()
        let t0 = clock.now
        let question = questionTokens(options.instruction, chat: true, raw: false)
        let longest = (0..<tokenizer.vocabularySize).reduce(1) { max($0, tokenizer.pieceBytes(Int32($1)).count) }
        let limit = options.parameters.beginSelective * longest
        let head = try source.peek(limit + 1)
        if head.count <= limit {
            guard let text = String(validating: head, as: UTF8.self) else {
                throw PipelineError.invalidUTF8(name: source.name, offset: firstInvalidUTF8(head))
            }
            guard text.contains(where: { !$0.isWhitespace }) else { throw PipelineError.blankDocument(name: source.name) }
            let (doc, _) = documentTokens(text, chat: true)
            if store == nil && doc.count + question.count + options.maxTokens <= options.parameters.beginSelective {
                let text = try generate(prompt: doc + question, options: options, temporaryStore: temporaryStore, onText: onText)
                return Summary(text: text, sections: [], reading: .dense, seconds: (clock.now - t0).seconds)
            }
        }
        var summary = Summary(text: "", sections: [], reading: .store, seconds: 0)
        func viaStore(_ dir: String) throws {
            let ingestStart = clock.now
            let info = try ingest(source: source, to: dir, modelFile: model.file, parameters: options.parameters,
                                  precision: .default, chat: true, progress: progress).info
            summary.ingestedTokens = info.tokens
            summary.ingestSeconds = (clock.now - ingestStart).seconds
            let (session, logits) = try open(store: dir, modelFile: model.file, then: question)
            _ = try answer(session: session, first: logits, maxTokens: options.maxTokens, sampling: options.sampling) { piece in
                summary.text += piece
                try onText(piece)
            }
        }
        if let store { try viaStore(store) } else {
            try withoutActuallyEscaping(viaStore) { try temporaryStore("summarize", $0) }
        }
        summary.seconds = (clock.now - t0).seconds
        return summary
    }

    /// One summary per section of `text` (`sections(of:)`), then one of the whole (`summarize`);
    /// `onSection` receives each title ("Overall" last) before its text goes to `onText`.
    public func summarizeSections(text: String, name: String, options: SummaryOptions, temporaryStore: TemporaryStoreProvider,
                                  onSection: (String) throws -> Void, onText: (String) throws -> Void) throws -> Summary {
        guard text.contains(where: { !$0.isWhitespace }) else { throw PipelineError.blankDocument(name: name) }
        var sections = [Summary.Section]()
        for s in self.sections(of: text, sectionTokens: options.sectionTokens) {
            try onSection(s.title)
            let ids = ChatTemplate.userTurnOpening(tokenizer: tokenizer) + s.ids + questionTokens(options.instruction, chat: true, raw: false)
            let summary = try generate(prompt: ids, options: options, temporaryStore: temporaryStore, onText: onText)
            sections.append(Summary.Section(title: s.title, text: summary))
        }
        try onSection("Overall")
        var whole = try summarize(source: DocumentSource(bytes: Array(text.utf8), name: name), options: options,
                                  temporaryStore: temporaryStore, onText: onText)
        whole.sections = sections
        return whole
    }

    /// Generates from a complete prompt: plain attention when it fits, else LongHeads via a temporary store.
    /// Returns the generated text.
    public func generate(prompt ids: [Int32], options: SummaryOptions, temporaryStore: TemporaryStoreProvider,
                         onText: (String) throws -> Void) throws -> String {
        var text = ""
        func collect(_ piece: String) throws {
            text += piece
            try onText(piece)
        }
        if ids.count + options.maxTokens <= options.parameters.beginSelective {
            let dense = DenseAttention(config: model.config, capacity: ids.count + options.maxTokens, pool: model.pool)
            _ = try Generator(model: model, tokenizer: tokenizer).generate(
                prompt: ids, maxTokens: options.maxTokens, sampling: options.sampling, attention: dense, onText: collect)
            return text
        }
        func viaStore(_ dir: String) throws {
            let (session, logits) = try run(prompt: ids, storeAt: dir, modelFile: model.file,
                                            parameters: options.parameters, precision: .default, chat: true)
            _ = try answer(session: session, first: logits, maxTokens: options.maxTokens, sampling: options.sampling, onText: collect)
        }
        try withoutActuallyEscaping(viaStore) { try temporaryStore("summarize", $0) }
        return text
    }

    /// Sections: from each Markdown heading (a line of `#`s and a space) to the next (text before the first
    /// heading is one more, "Preamble"), or, without headings, parts of `sectionTokens` tokens.
    public func sections(of text: String, sectionTokens: Int) -> [(title: String, ids: [Int32])] {
        var out = [(title: String, ids: [Int32])]()
        var title = "Preamble", body = ""
        func flush() {
            if body.contains(where: { !$0.isWhitespace }) { out.append((title, tokenizer.encode(body))) }
        }
        var headings = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("#"), case let t = line.drop(while: { $0 == "#" }), t.isEmpty || t.first == " " {
                flush()
                headings += 1
                title = t.trimmingCharacters(in: .whitespaces)
                if title.isEmpty { title = "Section \(headings)" }
                body = ""
            }
            body += line + "\n"
        }
        flush()
        if headings > 0 { return out }
        let ids = tokenizer.encode(text)
        return stride(from: 0, to: ids.count, by: sectionTokens).map { lo in
            let hi = min(ids.count, lo + sectionTokens)
            return ("Part \(lo / sectionTokens + 1) (tokens \(lo + 1)-\(hi))", Array(ids[lo..<hi]))
        }
    }
}
