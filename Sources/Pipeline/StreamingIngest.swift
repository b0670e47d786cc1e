#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import GGUF
import Generation
import KVStore
import LongHeads
import Model
import Tokenization

/// The bytes of a document, read front to back in blocks: a file, standard input, or bytes in memory.
/// Nothing but the current block is held, so a document of any size can be ingested.
public final class DocumentSource {
    /// For messages: the path, or "standard input".
    public let name: String
    /// Total bytes when known in advance (a regular file), for progress estimates.
    public let size: Int?
    private let fd: Int32
    private let ownsFD: Bool
    private let memory: [UInt8]?
    private var memoryOffset = 0
    /// Bytes read ahead by `peek` and not yet handed out by `read`.
    private var peeked: ArraySlice<UInt8> = []
    /// `read` was called: `peek` may no longer be.
    private var started = false

    /// Opens `path` for reading; "-" is standard input.
    public init(path: String) throws {
        if path == "-" {
            name = "standard input"
            fd = 0
            ownsFD = false
        } else {
            name = path
            fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw PipelineError.cannotReadSource(name: path, reason: String(cString: strerror(errno))) }
            ownsFD = true
        }
        var st = stat()
        // A closed standard input (`<&-`), one open only for writing (the CLI parks /dev/null write-only on a
        // closed fd 0 so that no other file takes its number) and a directory are refused here, by name,
        // before any store is created.
        let mode = path == "-" ? fcntl(fd, F_GETFL) : O_RDONLY
        guard mode >= 0, mode & O_ACCMODE != O_WRONLY, fstat(fd, &st) == 0 else {
            let reason = path == "-" ? "standard input is closed" : String(cString: strerror(errno))
            if ownsFD { close(fd) }
            throw PipelineError.cannotReadSource(name: name, reason: reason)
        }
        guard (st.st_mode & S_IFMT) != S_IFDIR else {
            if ownsFD { close(fd) }
            throw PipelineError.cannotReadSource(name: name, reason: "is a directory")
        }
        size = (st.st_mode & S_IFMT) == S_IFREG ? Int(st.st_size) : nil
        memory = nil
    }

    /// A source over bytes already in memory (tests, `ingest(text:)`-like callers).
    public init(bytes: [UInt8], name: String = "text") {
        self.name = name
        size = bytes.count
        memory = bytes
        fd = -1
        ownsFD = false
    }

    deinit { if ownsFD { close(fd) } }

    /// The document's first `count` bytes (fewer only at its end), without consuming them: `read` hands
    /// them out again. Lets a caller decide from a document's head (does it fit a prompt?) how to read all
    /// of it, also from standard input, which cannot be read twice. Call it before the first `read`.
    public func peek(_ count: Int) throws -> [UInt8] {
        precondition(!started, "peek after read")
        var head = Array(peeked)
        var block = [UInt8](repeating: 0, count: max(0, count - head.count))
        while head.count < count {
            let n = try block.withUnsafeMutableBytes { try readSource(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<(count - head.count)])) }
            if n == 0 { break }
            head += block[..<n]
        }
        peeked = head[...]
        return head
    }

    /// Reads up to `buffer.count` bytes; 0 at the end of the document.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        started = true
        if !peeked.isEmpty {
            let n = min(buffer.count, peeked.count)
            peeked.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: n) }
            peeked = peeked.dropFirst(n)
            return n
        }
        return try readSource(into: buffer)
    }

    /// Reads from the file, standard input or memory.
    private func readSource(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if let memory {
            let n = min(buffer.count, memory.count - memoryOffset)
            memory.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + memoryOffset, byteCount: n) }
            memoryOffset += n
            return n
        }
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw PipelineError.cannotReadSource(name: name, reason: String(cString: strerror(errno)))
        }
    }
}

/// Where an ingest stands; handed to the progress callback after every chunk and at the end.
public struct IngestProgress: Sendable {
    /// Document tokens so far (template tokens included), verified or ingested.
    public var tokens: Int
    /// Complete chunks in the store.
    public var chunks: Int
    /// Chunks that were already in the store (resume) and were verified instead of recomputed.
    public var resumedChunks: Int
    /// Source bytes covered by the complete chunks.
    public var bytesDone: Int
    /// Source bytes covered when this run started computing (the verified prefix on resume).
    public var bytesAtStart: Int
    /// Source size, when known (a regular file).
    public var sourceBytes: Int?
    /// Seconds since the ingest started.
    public var seconds: Double
    /// Seconds spent computing chunks (not verifying them).
    public var computeSeconds: Double
    /// The last update of the run.
    public var done: Bool

    /// Tokens per second of the chunks computed by this run.
    public var tokensPerSecond: Double {
        computeSeconds > 0 ? Double(tokens - resumedTokens) / computeSeconds : 0
    }

    /// Tokens that were verified rather than computed.
    public var resumedTokens: Int = 0

    /// Seconds left, estimated from the bytes still to read at this run's rate (nil if the size is unknown).
    public var etaSeconds: Double? {
        guard let total = sourceBytes, bytesDone > bytesAtStart, computeSeconds > 0 else { return nil }
        return max(0, Double(total - bytesDone) * computeSeconds / Double(bytesDone - bytesAtStart))
    }
}

/// What an ingest (or resume) did.
public struct IngestSummary: Sendable {
    /// The store's description as committed.
    public var info: StoreInfo
    /// Chunks found in the store and verified against the source (0 for a new store).
    public var resumedChunks: Int
    /// Chunks computed by this run.
    public var computedChunks: Int
    /// KV precision of the store.
    public var precision: KVPrecision
}

extension DocumentPipeline {
    /// Source bytes read per block.
    public static let defaultBlockBytes = 1 << 20

    /// Builds a new store at `path` from `source`, streaming: the source is read in blocks of
    /// `blockBytes`, tokenized as it comes (ids equal to tokenizing the whole text at once) and run chunk
    /// by chunk, so memory does not depend on the document's length. Chunks are committed as the writer's
    /// default policy says (every 16 chunks or 2 seconds) and when `shouldStop` returns true (checked after
    /// every chunk), which ends the ingest with `PipelineError.interrupted`; `resume` continues it.
    @discardableResult
    public func ingest(source: DocumentSource, to path: String, modelFile: GGUFFile, parameters: LongHeadsParameters,
                       precision: KVPrecision, chat: Bool, blockBytes: Int = defaultBlockBytes,
                       progress: (IngestProgress) -> Void = { _ in }, shouldStop: () -> Bool = { false }) throws -> IngestSummary {
        // Read the first block before creating anything: an empty document makes no store.
        let reader = try BlockReader(source: source, blockBytes: blockBytes)
        guard !reader.atEnd else { throw PipelineError.emptySource(name: source.name) }
        // Only a directory this ingest makes is ever removed again (below); one that existed stays, emptied
        // of the store's files.
        let madeDirectory = access(path, F_OK) != 0
        let (writer, info) = try createStore(at: path, modelFile: modelFile, parameters: parameters, precision: precision, chat: chat)
        do {
            let run = try ChunkIngester(pipeline: self, writer: writer, info: info, verify: 0, sourceSize: source.size, prepare: { _ in })
            return try run.stream(reader, progress: progress, shouldStop: shouldStop)
        } catch {
            // Failed (bad input data, a read or write error) before a byte of the document was committed
            // (chunks of template tokens alone end at byte 0): nothing is there to resume, and a store left
            // unfinished would only make the retry fail with "already exists" (issue 14). A stop request
            // keeps the store: its message says how to resume.
            if writer.header.sourceBytesConsumed == 0 {
                if case PipelineError.interrupted = error {} else { StoreWriter.removeStoreFiles(at: path, directory: madeDirectory) }
            }
            throw error
        }
    }


    /// A new, empty store at `path` for `parameters` and `precision`, described as an unfinished ingest.
    private func createStore(at path: String, modelFile: GGUFFile, parameters: LongHeadsParameters, precision: KVPrecision,
                             chat: Bool) throws -> (StoreWriter, StoreInfo) {
        let info = StoreInfo(chunkSize: parameters.chunkSize, attentionLength: parameters.attentionLength,
                             beginSelective: parameters.beginSelective, chat: chat, tailTokens: [], tokens: 0, sourceBytes: 0,
                             model: (modelFile.path as NSString).lastPathComponent, policy: parameters.policy,
                             summaryVersion: ChunkSummaryLayout.version, summaryContents: parameters.summary, complete: false, vocabularySize: model.config.vocabSize)
        let writer = try StoreWriter.create(at: path, geometry: geometry(parameters, precision: precision),
                                            modelFingerprint: modelFingerprint(modelFile), tokenizerFingerprint: tokenizerFingerprint(modelFile),
                                            flags: chat ? 1 : 0, blob: try JSONEncoder().encode(info).map { $0 })
        return (writer, info)
    }

    /// Continues the ingest of `source` into the store at `path`, interrupted (Ctrl-C, kill -9, a crash)
    /// after some chunks were committed: the store is reopened (anything after its last commit is cut
    /// off), the source is tokenized again from the start and its tokens and byte ranges are checked
    /// against every committed chunk without running the model (`PipelineError.sourceChanged` if they
    /// differ), then the ingest continues. The LongHeads parameters, precision and chat mode are the
    /// store's. Chunks are computed exactly as an uninterrupted ingest computes them (see
    /// `ChunkIngester`), so the finished store is the same, byte for byte. A finished store is only checked.
    @discardableResult
    public func resume(source: DocumentSource, store path: String, modelFile: GGUFFile, blockBytes: Int = defaultBlockBytes,
                       progress: (IngestProgress) -> Void = { _ in }, shouldStop: () -> Bool = { false }) throws -> IngestSummary {
        let writer = try StoreWriter.resume(at: path, expectedModelFingerprint: modelFingerprint(modelFile))
        let info = try StoreInfo.decode(writer.header.blob, path: path, header: writer.header, vocabularySize: model.config.vocabSize)
        try info.checkSummaryVersion(path: path)
        guard geometry(info.parameters, precision: writer.geometry.precision) == writer.geometry else {
            throw PipelineError.badStoreInfo(path: path, reason: "its description does not match its layout (\(writer.geometry))")
        }
        guard writer.header.tokenizerFingerprint == tokenizerFingerprint(modelFile) else {
            throw PipelineError.sourceChanged(path: path, chunk: 0, reason: "the model's tokenizer is not the one the store was made with")
        }
        // This pipeline never appends a partial chunk (the tail lives in the description); drop one if found.
        if writer.lastChunkIsPartial { try writer.truncate(toChunkCount: writer.chunkCount - 1) }
        let reader = try BlockReader(source: source, blockBytes: blockBytes)
        guard !reader.atEnd else { throw PipelineError.emptySource(name: source.name) }
        let run = try ChunkIngester(pipeline: self, writer: writer, info: info, verify: writer.chunkCount, sourceSize: source.size,
                                    prepare: { _ in })
        return try run.stream(reader, progress: progress, shouldStop: shouldStop)
    }

    /// Builds a store from token ids already in memory (`byteEnds[i]`: source byte offset after token i),
    /// through the same chunk loop as the streaming ingest.
    func ingestIDs(_ ids: [Int32], byteEnds ends: [Int], sourceBytes: Int, to path: String, modelFile: GGUFFile,
                   parameters: LongHeadsParameters, precision: KVPrecision, chat: Bool,
                   progress: (Int, Int) -> Void, prepare: (LongHeadsAttention) -> Void) throws -> StoreInfo {
        let (writer, info) = try createStore(at: path, modelFile: modelFile, parameters: parameters, precision: precision, chat: chat)
        // The ingester keeps `prepare` only for the duration of this call.
        return try withoutActuallyEscaping(prepare) { prepare in
            let run = try ChunkIngester(pipeline: self, writer: writer, info: info, verify: 0, sourceSize: sourceBytes, prepare: prepare)
            return try run.guarding {
                for (i, id) in ids.enumerated() {
                    if try run.add(id, byteEnd: ends[i]) { progress(run.tokens, ids.count) }
                }
                let info = try run.finish(sourceBytes: sourceBytes)
                progress(ids.count, ids.count)
                return info
            }
        }
    }

    /// Template tokens that open a document: the chat user-turn opening, or BOS when the model wants it.
    func documentOpening(chat: Bool) -> [Int32] {
        if chat { return ChatTemplate.userTurnOpening(tokenizer: tokenizer) }
        if tokenizer.addBOS, let bos = tokenizer.bosID { return [bos] }
        return []
    }
}

/// Reads a source block by block (one block buffer, reused).
final class BlockReader {
    let source: DocumentSource
    private let buffer: UnsafeMutableRawBufferPointer
    private var filled = 0
    private(set) var atEnd = false
    private(set) var bytesRead = 0

    init(source: DocumentSource, blockBytes: Int) throws {
        self.source = source
        buffer = .allocate(byteCount: max(1, blockBytes), alignment: 64)
        // No deallocation here if `fill` throws: every stored property is set, so `deinit` runs and frees
        // the buffer (freeing it here too was the double free of issue 14).
        try fill()
    }

    deinit { buffer.deallocate() }

    /// The current block (empty at the end).
    var block: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: buffer[0..<filled]) }

    /// Reads the next block.
    func fill() throws {
        filled = 0
        // Fill the whole buffer unless the source ends: pipes deliver a few KiB per read.
        while filled < buffer.count {
            let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
            if n == 0 { break }
            filled += n
        }
        bytesRead += filled
        atEnd = filled == 0
    }
}

/// The chunk loop of an ingest: tokens come in one at a time with their source byte end; every `chunkSize`
/// tokens make a chunk, which is either checked against the store (the committed prefix when resuming)
/// or run through the model and appended. It holds one chunk of tokens, never the document.
///
/// Exactness of resume: LongHeads keeps the previous chunk in RAM (its ring) as the archive stores it
/// (`LongHeadsAttention` reads each chunk back after archiving it), and an attention built over a store
/// loads that same chunk from disk; so a resumed ingest continues exactly as an uninterrupted one. One
/// attention runs all the chunks this ingest computes, built at the first of them.
final class ChunkIngester {
    let pipeline: DocumentPipeline
    /// The attention that computes chunks (built at the first chunk not already in the store).
    private var attention: LongHeadsAttention?
    let writer: StoreWriter
    let archive: StoreArchive
    let parameters: LongHeadsParameters
    let w: Int
    let prepare: (LongHeadsAttention) -> Void
    var info: StoreInfo
    /// Committed chunks to verify instead of computing.
    let verify: Int
    /// Tokens of the chunk being filled.
    private var chunk: [Int32] = []
    private var chunkEnd = 0
    /// Source byte end of the previous chunk (start of this one's range).
    private var chunkStart = 0
    private(set) var chunks = 0
    private(set) var tokens = 0
    private var computed = 0
    private let clock = ContinuousClock()
    private let t0: ContinuousClock.Instant
    private var computeSeconds = 0.0
    private var bytesAtStart = 0
    private let sourceSize: Int?

    init(pipeline: DocumentPipeline, writer: StoreWriter, info: StoreInfo, verify: Int, sourceSize: Int?,
         prepare: @escaping (LongHeadsAttention) -> Void) throws {
        self.pipeline = pipeline
        self.writer = writer
        self.info = info
        parameters = info.parameters
        w = info.chunkSize
        self.verify = verify
        self.prepare = prepare
        self.sourceSize = sourceSize
        archive = try StoreArchive(writer: writer, budgetBytes: pipeline.budgetBytes)
        chunk.reserveCapacity(w)
        t0 = clock.now
    }

    /// Runs `body`; on any error the writer is closed (committing the chunks appended, all complete and
    /// consistent, so that a resume can continue) before the error is passed on.
    func guarding<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch {
            try? writer.close()
            throw error
        }
    }

    /// Adds one token; returns true if it completed a chunk.
    func add(_ id: Int32, byteEnd: Int) throws -> Bool {
        chunk.append(id)
        chunkEnd = byteEnd
        tokens += 1
        guard chunk.count == w else { return false }
        let c = chunks
        let range = UInt64(chunkStart)..<UInt64(chunkEnd)
        if c < verify {
            let stored = try writer.reader.tokens(ofChunk: c)
            let storedRange = try writer.reader.byteRange(ofChunk: c)
            if stored != chunk {
                let at = zip(stored, chunk).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(stored.count, chunk.count)
                throw PipelineError.sourceChanged(path: writer.path, chunk: c,
                                                  reason: "token \(c * w + at) differs from the one stored (source bytes \(storedRange))")
            }
            guard storedRange == range else {
                throw PipelineError.sourceChanged(path: writer.path, chunk: c,
                                                  reason: "its source bytes are \(range), the store has \(storedRange)")
            }
            bytesAtStart = chunkEnd
        } else {
            let t = clock.now
            if attention == nil {
                let a = try LongHeadsAttention(config: pipeline.model.config, parameters: parameters, archive: archive,
                                               pool: pipeline.model.pool)
                prepare(a)
                attention = a
            }
            try attention!.ingest(chunk: ChunkSource(tokens: chunk, byteRange: range), at: c * w, model: pipeline.model)
            computeSeconds += (clock.now - t).seconds
            computed += 1
        }
        chunks += 1
        chunkStart = chunkEnd
        chunk.removeAll(keepingCapacity: true)
        return true
    }

    func progress(done: Bool) -> IngestProgress {
        var p = IngestProgress(tokens: tokens, chunks: chunks, resumedChunks: min(chunks, verify), bytesDone: chunkStart,
                               bytesAtStart: bytesAtStart, sourceBytes: sourceSize, seconds: (clock.now - t0).seconds,
                               computeSeconds: computeSeconds, done: done)
        p.resumedTokens = min(chunks, verify) * w
        return p
    }

    /// Ends the document: checks a resumed store's remaining state, records the tail and commits.
    func finish(sourceBytes: Int) throws -> StoreInfo {
        if chunks < verify {
            throw PipelineError.sourceChanged(path: writer.path, chunk: chunks,
                                              reason: "the source ends before the \(verify) chunks the store holds")
        }
        if info.complete == true && (chunk != info.tailTokens || tokens != info.tokens) {
            throw PipelineError.sourceChanged(path: writer.path, chunk: chunks,
                                              reason: "the finished store's last \(info.tailTokens.count) tokens (or its length) differ")
        }
        info.tailTokens = chunk
        info.tokens = tokens
        info.sourceBytes = sourceBytes
        info.complete = true
        try writer.updateBlob(try JSONEncoder().encode(info).map { $0 })
        try writer.commit()
        try writer.close()
        return info
    }

    /// Tokenizes `reader`'s blocks as they come and feeds the tokens in; commits and throws
    /// `PipelineError.interrupted` when `shouldStop` says so (checked after each computed chunk).
    func stream(_ reader: BlockReader, progress: (IngestProgress) -> Void,
                shouldStop: () -> Bool) throws -> IngestSummary {
        let name = reader.source.name
        let tokenizer = pipeline.tokenizer
        let info = try guarding { () throws -> StoreInfo in
            var encoder = StreamingEncoder(tokenizer: tokenizer)
            var ids = [Int32]()
            var byteEnd = 0
            func feed() throws {
                for id in ids {
                    byteEnd += tokenizer.pieceBytes(id).count
                    if try add(id, byteEnd: byteEnd) {
                        if chunks > verify {
                            progress(self.progress(done: false))
                            if shouldStop() {
                                try writer.commit()
                                try writer.close()
                                throw PipelineError.interrupted(path: writer.path, chunks: chunks, tokens: chunks * w)
                            }
                        }
                    }
                }
                ids.removeAll(keepingCapacity: true)
            }
            ids = pipeline.documentOpening(chat: self.info.chat)
            // Template tokens are not source text: they end at byte 0.
            for id in ids { _ = try add(id, byteEnd: 0) }
            ids.removeAll()
            do {
                while !reader.atEnd {
                    try encoder.append(reader.block, into: &ids)
                    try feed()
                    try reader.fill()
                }
                try encoder.finish(into: &ids)
            } catch TokenizerError.invalidUTF8(let offset) {
                throw PipelineError.invalidUTF8(name: name, offset: offset)
            }
            try feed()
            return try finish(sourceBytes: reader.bytesRead)
        }
        progress(self.progress(done: true))
        return IngestSummary(info: info, resumedChunks: verify, computedChunks: computed, precision: writer.geometry.precision)
    }
}

extension Duration {
    fileprivate var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
