// `features` file: the 64-byte data-file prefix (FileSupport.swift; magic "LHFT", record bytes
// 4 × featureFloatsPerChunk), then [chunks][featureFloatsPerChunk] float32, uncompressed, chunk c at
// 64 + c × 4 × featureFloatsPerChunk. Readers map it and hand out one contiguous pointer (the data starts
// 64 bytes into a page-aligned mapping, so it is 64-byte aligned). Each chunk's CRC32C is in its
// page-table record (PageTableFile.swift).

let featuresMagic = magic("LHFT")

enum FeaturesFile {
    static func offset(chunk: Int, floats: Int) -> Int { dataFileHeaderBytes + chunk * 4 * floats }
}
