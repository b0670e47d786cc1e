import CStoreSupport

/// How the KV values of a page are stored on disk (before LZ4).
public enum KVPrecision: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    /// IEEE half precision, round to nearest even; finite values beyond ±65504 saturate.
    /// Relative error ≤ 2⁻¹¹ in the normal range (|x| ≥ 6.1e-5), absolute error ≤ 2⁻²⁵ below it.
    case f16 = 0
    /// KIVI 8-bit (arXiv 2402.02750): asymmetric codes with a half-precision min and scale per key channel
    /// over 64 tokens and per value token of each head (cstoresupport.h). Error ≤ scale / 2 = range / 510.
    case q8 = 1
    /// KIVI 4-bit, the same groups: error ≤ scale / 2 = range / 30.
    case q4 = 2

    /// The format of new stores, chosen by measurement (Docs/PERFORMANCE.md, "Quantized pages").
    public static let `default`: KVPrecision = .q4

    public var description: String {
        switch self {
        case .f16: "f16"
        case .q8: "q8"
        case .q4: "q4"
        }
    }

    /// The precision named `name` (f16, q8, q4), or nil.
    public init?(name: String) {
        guard let p = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = p
    }

    /// Bits per code of the quantized formats; nil for f16.
    var bits: Int32? {
        switch self {
        case .f16: nil
        case .q8: 8
        case .q4: 4
        }
    }
}

/// The numbers a store needs to lay out its files. The store knows nothing else about the model:
/// `kvHeads`, `queryHeads` and `headDim` are recorded and checked, the float layout inside a page and
/// inside a chunk's features is the caller's.
public struct StoreGeometry: Sendable, Equatable, CustomStringConvertible {
    /// Transformer layers: one page per (chunk, layer).
    public var layers: Int
    /// Key/value heads.
    public var kvHeads: Int
    /// Query heads.
    public var queryHeads: Int
    /// Dimension of one head.
    public var headDim: Int
    /// Tokens per chunk (LongHeads `w`, default 256).
    public var chunkSize: Int
    /// Floats in one page (one chunk, one layer): typically `2 * chunkSize * kvHeads * headDim` (K and V).
    public var floatsPerPage: Int
    /// Floats of selection features per chunk (all layers), stored uncompressed and mapped.
    public var featureFloatsPerChunk: Int
    /// On-disk precision of pages.
    public var precision: KVPrecision

    /// A geometry; `floatsPerPage` defaults to K and V of all KV heads for `chunkSize` tokens, and
    /// `featureFloatsPerChunk` to one key feature per (layer, KV head): `layers * kvHeads * headDim`.
    public init(layers: Int, kvHeads: Int, queryHeads: Int, headDim: Int, chunkSize: Int = 256,
                floatsPerPage: Int? = nil, featureFloatsPerChunk: Int? = nil, precision: KVPrecision = .f16) {
        self.layers = layers
        self.kvHeads = kvHeads
        self.queryHeads = queryHeads
        self.headDim = headDim
        self.chunkSize = chunkSize
        self.floatsPerPage = floatsPerPage ?? 2 * chunkSize * kvHeads * headDim
        self.featureFloatsPerChunk = featureFloatsPerChunk ?? layers * kvHeads * headDim
        self.precision = precision
    }

    /// Bytes of one decoded page (float32).
    public var pageBytes: Int { floatsPerPage * 4 }

    /// Bytes of one page's encoding before LZ4 (cstoresupport.h); nil when a quantized precision is asked
    /// of a page that is not the K/V layout its key and value groups follow (ChunkArchive.swift).
    public var encodedPageBytes: Int? {
        guard let bits = precision.bits else { return 2 * floatsPerPage }
        // Checked products: the numbers may come from a damaged header.
        guard chunkSize > 0, chunkSize % 16 == 0, kvHeads > 0, headDim > 0,
              chunkSize <= Int(Int32.max), kvHeads <= Int(Int32.max), headDim <= Int(Int32.max) else { return nil }
        let a = (2 * chunkSize).multipliedReportingOverflow(by: kvHeads)
        let b = a.partialValue.multipliedReportingOverflow(by: headDim)
        guard !a.overflow, !b.overflow, b.partialValue == floatsPerPage else { return nil }
        return cs_kivi_bytes(bits, Int32(kvHeads), Int32(chunkSize), Int32(headDim))
    }

    /// Bits per code of a quantized precision (8 or 4); nil for f16.
    public var quantizedBits: Int? { precision.bits.map(Int.init) }

    /// Bytes of the parameter plane at the start of an encoded q8/q4 page (after it, the code plane;
    /// cstoresupport.h); nil for f16 or a geometry with no KIVI encoding.
    public var encodedParamBytes: Int? {
        guard precision.bits != nil, encodedPageBytes != nil else { return nil }
        return cs_kivi_param_bytes(Int32(kvHeads), Int32(chunkSize), Int32(headDim))
    }

    /// Decodes one page's encoding (`encodedPageBytes` bytes at `src`, as `StoreReader.readEncodedPage`
    /// gives it) into `floatsPerPage` floats at `dst` (not overlapping `src`): what `readPage` would have
    /// given. For the few reads that want floats from a cache of encoded pages.
    public func decode(encoded src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>) {
        guard let bits = precision.bits else {
            cs_f16_to_f32(dst, src.assumingMemoryBound(to: UInt16.self), floatsPerPage)
            return
        }
        precondition(encodedPageBytes != nil, "no \(precision) encoding of pages of \(self)")
        let (G, w, D) = (Int32(kvHeads), Int32(chunkSize), Int32(headDim))
        withUnsafeTemporaryAllocation(byteCount: cs_kivi_param_bytes(G, w, D), alignment: 16) { params in
            cs_kivi_decode(dst, src.assumingMemoryBound(to: UInt8.self), params.baseAddress!.assumingMemoryBound(to: UInt16.self), bits, G, w, D)
        }
    }

    public var description: String {
        "\(layers) layers, \(kvHeads) KV heads, \(queryHeads) query heads, head dim \(headDim), chunk \(chunkSize) tokens, "
            + "\(floatsPerPage) floats/page (\(precision)), \(featureFloatsPerChunk) feature floats/chunk"
    }

    /// Named fields, for comparisons that report which one differs.
    var fields: [(String, Int)] {
        [("layers", layers), ("kvHeads", kvHeads), ("queryHeads", queryHeads), ("headDim", headDim),
         ("chunkSize", chunkSize), ("floatsPerPage", floatsPerPage),
         ("featureFloatsPerChunk", featureFloatsPerChunk), ("precision", Int(precision.rawValue))]
    }

    func validate() throws {
        for (name, v) in fields where name != "precision" && name != "featureFloatsPerChunk" {
            guard v > 0, v <= Int(UInt32.max) / 4 else { throw StoreError.invalidArgument("geometry \(name) = \(v) is out of range") }
        }
        guard featureFloatsPerChunk >= 0, featureFloatsPerChunk <= Int(UInt32.max) / 4 else {
            throw StoreError.invalidArgument("geometry featureFloatsPerChunk = \(featureFloatsPerChunk) is out of range")
        }
        guard encodedPageBytes != nil else {
            throw StoreError.invalidArgument("geometry: \(precision) pages need the K/V page layout (chunk size a multiple of 16, "
                                             + "floatsPerPage = 2 × chunk × kvHeads × headDim), got \(floatsPerPage) floats/page")
        }
    }

    /// Throws `geometryMismatch` naming the first field of `found` that differs from `self`.
    func check(found: StoreGeometry, path: String) throws {
        for ((name, e), (_, f)) in zip(fields, found.fields) where e != f {
            throw StoreError.geometryMismatch(path: path, field: name, expected: e, found: f)
        }
    }
}

/// The committed state of a store, as recorded in its `header` file.
public struct StoreHeader: Sendable, Equatable {
    /// Format version of the files.
    public var formatVersion: UInt32
    /// 16 random bytes chosen at creation; every data file repeats them.
    public var storeID: [UInt8]
    /// 32 bytes given by the caller: identifies the model whose KV this is.
    public var modelFingerprint: [UInt8]
    /// 32 bytes given by the caller: identifies the tokenizer.
    public var tokenizerFingerprint: [UInt8]
    /// Layout numbers.
    public var geometry: StoreGeometry
    /// Caller-defined bits.
    public var flags: UInt32
    /// Committed chunks.
    public var chunkCount: Int
    /// Committed tokens (all chunks; only the last may be partial).
    public var tokenCount: Int
    /// End of the last committed chunk's byte range in the source text.
    public var sourceBytesConsumed: UInt64
    /// Committed length of the `pages` file.
    public var pagesBytes: Int
    /// Incremented by every commit.
    public var commitSequence: UInt64
    /// Caller-defined opaque bytes (≤ 64 KiB), e.g. JSON with parameters and source-file identity.
    public var blob: [UInt8]
}
