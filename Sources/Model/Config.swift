import GGUF

/// Errors from loading a model; each names the file and what is wrong.
public enum ModelError: Error, CustomStringConvertible {
    case gguf(GGUFError)
    case unsupportedArchitecture(path: String, architecture: String)
    case unsupportedTensorType(path: String, tensor: String, type: String)
    case badShape(path: String, tensor: String, expected: [Int], found: [Int])
    case badHyperparameter(path: String, key: String, reason: String)
    case kernel(path: String, tensor: String, reason: String)

    public var description: String {
        switch self {
        case .gguf(let e): e.description
        case .unsupportedArchitecture(let p, let a):
            "\(p): unsupported model architecture '\(a)' (supported: llama)"
        case .unsupportedTensorType(let p, let t, let ty):
            "\(p): tensor '\(t)' has type \(ty), which the engine cannot compute with (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)"
        case .badShape(let p, let t, let e, let f): "\(p): tensor '\(t)' has shape \(f), expected \(e)"
        case .badHyperparameter(let p, let k, let r): "\(p): bad hyperparameter '\(k)': \(r)"
        case .kernel(let p, let t, let r): "\(p): tensor '\(t)': \(r)"
        }
    }
}

/// Hyperparameters of a Llama-architecture model, read from GGUF metadata (`{arch}.*` keys).
public struct ModelConfig: Sendable, Equatable {
    /// `general.architecture`.
    public var architecture: String
    /// Number of transformer blocks.
    public var layers: Int
    /// Residual stream width.
    public var dim: Int
    /// SwiGLU hidden width.
    public var ffnDim: Int
    /// Query heads.
    public var heads: Int
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    public var kvHeads: Int
    /// Width of one head.
    public var headDim: Int
    /// Vocabulary size (rows of the embedding).
    public var vocabSize: Int
    /// RoPE frequency base.
    public var ropeBase: Double
    /// Dimensions rotated by RoPE (the rest pass through).
    public var ropeDim: Int
    /// RMSNorm epsilon.
    public var rmsEps: Float
    /// Context length the model was trained on.
    public var trainedContext: Int

    /// Memberwise initializer (tests build tiny configs).
    public init(architecture: String = "llama", layers: Int, dim: Int, ffnDim: Int, heads: Int, kvHeads: Int,
                vocabSize: Int, ropeBase: Double = 10000, ropeDim: Int? = nil, rmsEps: Float = 1e-5, trainedContext: Int = 2048) {
        self.architecture = architecture
        self.layers = layers
        self.dim = dim
        self.ffnDim = ffnDim
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = dim / heads
        self.vocabSize = vocabSize
        self.ropeBase = ropeBase
        self.ropeDim = ropeDim ?? dim / heads
        self.rmsEps = rmsEps
        self.trainedContext = trainedContext
    }

    /// Architectures whose GGUF tensors and math are the Llama layout.
    public static let supportedArchitectures: Set<String> = ["llama"]

    /// Reads the config of `file`, refusing architectures that are not Llama-family.
    public init(gguf file: GGUFFile) throws(ModelError) {
        let arch: String
        do { arch = try file.string("general.architecture") } catch { throw .gguf(error) }
        guard Self.supportedArchitectures.contains(arch) else {
            throw .unsupportedArchitecture(path: file.path, architecture: arch)
        }
        func int(_ k: String) throws(ModelError) -> Int {
            do { return try file.int("\(arch).\(k)") } catch { throw .gguf(error) }
        }
        let heads = try int("attention.head_count")
        let dim = try int("embedding_length")
        let kvHeads = file.metadata["\(arch).attention.head_count_kv"]?.intValue ?? heads
        guard heads > 0, dim % heads == 0, kvHeads > 0, heads % kvHeads == 0 else {
            throw .badHyperparameter(path: file.path, key: "\(arch).attention.head_count", reason: "\(heads) heads, \(kvHeads) KV heads, width \(dim)")
        }
        let vocab: Int
        do { vocab = try file.tensor("token_embd.weight").dims.last! } catch { throw .gguf(error) }
        self.init(
            architecture: arch,
            layers: try int("block_count"),
            dim: dim,
            ffnDim: try int("feed_forward_length"),
            heads: heads,
            kvHeads: kvHeads,
            vocabSize: vocab,
            ropeBase: file.metadata["\(arch).rope.freq_base"]?.floatValue ?? 10000,
            ropeDim: file.metadata["\(arch).rope.dimension_count"]?.intValue,
            rmsEps: Float(file.metadata["\(arch).attention.layer_norm_rms_epsilon"]?.floatValue ?? 1e-5),
            trainedContext: file.metadata["\(arch).context_length"]?.intValue ?? 2048)
        guard ropeDim > 0, ropeDim <= headDim, ropeDim % 2 == 0 else {
            throw .badHyperparameter(path: file.path, key: "\(arch).rope.dimension_count", reason: "\(ropeDim) for head width \(headDim)")
        }
        guard layers > 0, ffnDim > 0 else {
            throw .badHyperparameter(path: file.path, key: "\(arch).block_count", reason: "\(layers) layers, ffn \(ffnDim)")
        }
    }
}
