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

    /// Archives chunk `chunkCount` (all layers' pages at once, `pages[layer]`) with its summary.
    func append(pages: [UnsafeBufferPointer<Float>], features: UnsafeBufferPointer<Float>) throws

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
