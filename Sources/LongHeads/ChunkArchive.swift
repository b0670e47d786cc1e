import CKernels

/// A page as an archive hands it to the attention's chunk read (`ChunkArchive.withStoredPage`).
public enum ArchivedPage {
    /// Decoded floats in the `PageLayout`.
    case floats(UnsafePointer<Float>)
    /// The store's q8/q4 KIVI encoding of the page (lh_attention.h), dequantized tile by tile inside the
    /// attention kernel (`lh_attn_update_kivi`) instead of decoded to floats first.
    case kivi(lh_kivi_page)

    /// The KIVI page whose encoding (`paramBytes` of parameter plane, then the code plane) is at `encoded`.
    public static func kivi(encoded: UnsafeRawPointer, paramBytes: Int, bits: Int, kvHeads: Int, chunkSize: Int) -> ArchivedPage {
        precondition((bits == 4 || bits == 8) && chunkSize % 16 == 0, "KIVI pages have 4- or 8-bit codes and 16-token tiles")
        return .kivi(lh_kivi_page(params: encoded.assumingMemoryBound(to: UInt16.self), codes: (encoded + paramBytes).assumingMemoryBound(to: UInt8.self),
                                  bits: Int32(bits), kvHeads: Int32(kvHeads), chunk: Int32(chunkSize)))
    }
}

/// Where LongHeads puts chunks that left the recent window, and reads them back from.
///
/// A page is one chunk × one layer: the keys of all KV heads with LOCAL RoPE (offset 0..w-1 inside the
/// chunk), in the attention kernel's transposed 16-key tiles, then the values, row-major:
///
///     keys   [kvHeads][w/16][headDim][16]   floats   (lh_attention.h "transposed tiles")
///     values [kvHeads][w][headDim]          floats
///
/// Each chunk also has a summary for selection, `ChunkSummaryLayout.floatsPerChunk` floats (key features
/// and Quest bounds per layer; LONGHEADS.md "Per-chunk representation", Selection.swift).
public protocol ChunkArchive: AnyObject {
    /// Complete chunks archived so far.
    var chunkCount: Int { get }

    /// Summary of an archived chunk (`ChunkSummaryLayout`); valid while the archive lives.
    func features(ofChunk chunk: Int) throws -> UnsafePointer<Float>

    /// Points `rows[x]` at layer `layer`'s part of the summary of chunk `chunks.lowerBound + x`
    /// (`rowFloats` floats, `ChunkSummaryLayout.floatsPerLayer`), for a scan of one layer over many
    /// chunks. The pointers stay valid until the next call (an archive on disk may release the rows of
    /// the previous scan, so that what scans make resident does not grow with the document).
    func featureRows(layer: Int, chunks: Range<Int>, rowFloats: Int, into rows: UnsafeMutablePointer<UnsafePointer<Float>>) throws

    /// Archives chunk `chunk.index` (= `chunkCount`) with its summary and, when known, its source.
    func append(_ chunk: CompletedChunk) throws

    /// Runs `body` with the decoded page of (chunk, layer); the page stays valid during `body`.
    /// May be called from several threads at once.
    func withPage<R>(chunk: Int, layer: Int, _ body: (UnsafePointer<Float>) throws -> R) throws -> R

    /// Runs `body` with page (chunk, layer) as the archive holds it: decoded floats, or its q8/q4 encoding,
    /// which the attention reads without a decode pass. Valid during `body`; may be called from several
    /// threads at once. The default gives the floats of `withPage`.
    func withStoredPage<R>(chunk: Int, layer: Int, _ body: (ArchivedPage) throws -> R) throws -> R
}

extension ChunkArchive {
    public func withStoredPage<R>(chunk: Int, layer: Int, _ body: (ArchivedPage) throws -> R) throws -> R {
        try withPage(chunk: chunk, layer: layer) { try body(.floats($0)) }
    }
}

/// What a chunk holds of the document: its token ids and the source bytes they were read from.
public struct ChunkSource: Sendable, Equatable {
    /// The chunk's token ids.
    public var tokens: [Int32]
    /// Where its text is in the source, in bytes (empty for template tokens).
    public var byteRange: Range<UInt64>

    /// A chunk's source.
    public init(tokens: [Int32], byteRange: Range<UInt64>) {
        self.tokens = tokens
        self.byteRange = byteRange
    }
}

/// A chunk LongHeads completed, handed to its archive. The pointers are valid during `append` only.
public struct CompletedChunk {
    /// Its index (the archive's `chunkCount` before it).
    public var index: Int
    /// One page per layer (`PageLayout`).
    public var pages: [UnsafeBufferPointer<Float>]
    /// Its summary (`ChunkSummaryLayout.floatsPerChunk` floats).
    public var features: UnsafeBufferPointer<Float>
    /// Its tokens and source bytes when it came through `LongHeadsAttention.ingest`; nil for chunks completed
    /// by tokens the model ran otherwise (a question, an answer), which an archive keeps for the session only.
    public var source: ChunkSource?

    /// A completed chunk.
    public init(index: Int, pages: [UnsafeBufferPointer<Float>], features: UnsafeBufferPointer<Float>, source: ChunkSource?) {
        self.index = index
        self.pages = pages
        self.features = features
        self.source = source
    }
}

/// Page geometry shared by the attention and its archive.
public struct PageLayout: Sendable, Equatable {
    /// KV heads.
    public let kvHeads: Int
    /// Head width.
    public let headDim: Int
    /// Tokens per chunk.
    public let chunkSize: Int

    /// Floats of one KV head's keys (or values) in a page.
    public var headFloats: Int { chunkSize * headDim }
    /// Floats in a page: keys then values of every KV head.
    public var floatsPerPage: Int { 2 * kvHeads * headFloats }
    /// Offset of KV head `g`'s tiled keys.
    public func keys(_ g: Int) -> Int { g * headFloats }
    /// Offset of KV head `g`'s values.
    public func values(_ g: Int) -> Int { (kvHeads + g) * headFloats }

    /// A layout.
    public init(kvHeads: Int, headDim: Int, chunkSize: Int) {
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.chunkSize = chunkSize
    }
}
