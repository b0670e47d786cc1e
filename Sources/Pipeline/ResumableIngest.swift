import GGUF
import KVStore
import LongHeads

extension DocumentPipeline {
    /// `ingest [--resume]`: with `resume` and a store at `path`, continues its interrupted ingest of the
    /// same document (`resume(source:store:…)`: the store's own parameters, precision and template are
    /// used, the committed chunks are checked against the document); otherwise builds a new store
    /// (`ingest(source:to:…)`; `ingest --resume` with no store at `path` starts one).
    public func ingest(source: DocumentSource, to path: String, resume: Bool, modelFile: GGUFFile, parameters: LongHeadsParameters,
                       precision: KVPrecision, chat: Bool, blockBytes: Int = defaultBlockBytes,
                       progress: (IngestProgress) -> Void = { _ in }, shouldStop: () -> Bool = { false }) throws -> IngestSummary {
        if resume && StoreReader.storeExists(at: path) {
            return try self.resume(source: source, store: path, modelFile: modelFile, blockBytes: blockBytes, progress: progress,
                                   shouldStop: shouldStop)
        }
        return try ingest(source: source, to: path, modelFile: modelFile, parameters: parameters, precision: precision, chat: chat,
                          blockBytes: blockBytes, progress: progress, shouldStop: shouldStop)
    }
}
