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
            "\(p): unsupported model architecture '\(a)' (supported: \(ArchitectureFeatures.known.keys.sorted().joined(separator: ", ")))"
        case .unsupportedTensorType(let p, let t, let ty):
            "\(p): tensor '\(t)' has type \(ty), which the engine cannot compute with (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)"
        case .badShape(let p, let t, let e, let f): "\(p): tensor '\(t)' has shape \(f), expected \(e)"
        case .badHyperparameter(let p, let k, let r): "\(p): bad hyperparameter '\(k)': \(r)"
        case .kernel(let p, let t, let r): "\(p): tensor '\(t)': \(r)"
        }
    }
}

/// How RoPE pairs the dimensions of a head it rotates (ggml `rope_type`).
public enum RoPEPairing: String, Sendable, Equatable {
    /// `GGML_ROPE_TYPE_NORM` (llama): pair i is (x[2i], x[2i+1]).
    case interleaved
    /// `GGML_ROPE_TYPE_NEOX` (qwen2, and GPT-NeoX-derived models): pair i is (x[i], x[i + ropeDim/2]).
    case neox
}

/// What one architecture's forward pass does beyond the Llama baseline (RMSNorm, RoPE, GQA, SwiGLU).
///
/// The forward pass branches on these fields, never on the architecture's name: a new architecture is a
/// new row of `known` plus whatever new feature it needs (Docs/ARCHITECTURES.md lists qwen3's and gemma3's).
public struct ArchitectureFeatures: Sendable, Equatable {
    /// Q, K and V projections carry a bias vector (`blk.N.attn_{q,k,v}.bias`), added after the matmul.
    public var qkvBias: Bool
    /// RoPE dimension pairing.
    public var ropePairing: RoPEPairing

    /// Features of a plain Llama model.
    public init(qkvBias: Bool = false, ropePairing: RoPEPairing = .interleaved) {
        self.qkvBias = qkvBias
        self.ropePairing = ropePairing
    }

    /// The architectures the engine runs, by `general.architecture` (llama.cpp's llm_arch names; the
    /// features follow its llama.cpp graph builders `llm_build_llama` and `llm_build_qwen2` and
    /// `llama_model_rope_type`, which maps LLM_ARCH_QWEN2 to NEOX).
    public static let known: [String: ArchitectureFeatures] = [
        "llama": ArchitectureFeatures(),
        "qwen2": ArchitectureFeatures(qkvBias: true, ropePairing: .neox),
    ]
}

/// Hyperparameters of a Llama-family model, read from GGUF metadata (`{arch}.*` keys).
public struct ModelConfig: Sendable, Equatable {
    /// `general.architecture`.
    public var architecture: String
    /// What the forward pass does for this architecture.
    public var features: ArchitectureFeatures
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
    /// `features` defaults to the architecture's entry in `ArchitectureFeatures.known` (Llama's if unknown).
    public init(architecture: String = "llama", features: ArchitectureFeatures? = nil, layers: Int, dim: Int, ffnDim: Int,
                heads: Int, kvHeads: Int, vocabSize: Int, ropeBase: Double = 10000, ropeDim: Int? = nil, rmsEps: Float = 1e-5,
                trainedContext: Int = 2048) {
        self.architecture = architecture
        self.features = features ?? ArchitectureFeatures.known[architecture] ?? ArchitectureFeatures()
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

    /// Architectures the engine runs (`ArchitectureFeatures.known`).
    public static var supportedArchitectures: Set<String> { Set(ArchitectureFeatures.known.keys) }

    /// Reads the config of `file`, refusing architectures the engine does not describe.
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
