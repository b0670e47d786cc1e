// swift-tools-version:6.1
// longheads: long-document reading for small RoPE language models on CPU.
// Targets depend one way: GGUF ← Tokenization; CKernels ← Kernels ← Model ← Generation ← CLI.
import PackageDescription

/// Built as another package's dependency (checked out under `.build/checkouts/`, or asked with
/// LONGHEADS_NO_UNSAFE_FLAGS=1): SwiftPM refuses `unsafeFlags` in a package others depend on, so then no
/// target has any (a dependent's release build optimizes anyway). Docs/LIBRARY.md.
let isDependency = Context.packageDirectory.contains("/checkouts/") || Context.environment["LONGHEADS_NO_UNSAFE_FLAGS"] != nil

/// Hot code is optimized even in debug builds, so that `swift test` runs the real model at usable speed.
let optimized: [SwiftSetting] = isDependency ? [] : [.unsafeFlags(["-O"], .when(configuration: .debug))]
/// The C kernels: -O3, and no errno from math functions (lets sqrtf/expf vectorize).
let optimizedC: [CSetting] = isDependency ? [] : [.unsafeFlags(["-O3", "-fno-math-errno"])]

let package = Package(
    name: "longheads",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "longheads", targets: ["longheads"]),
        .library(name: "LongHeadsEngine", targets: ["GGUF", "Tokenization", "Kernels", "Model", "Generation"]),
        // The document API (Docs/LIBRARY.md): LongHeads attention, the on-disk KV store, and the pipeline
        // that ingests documents into stores and answers questions about them (`DocumentSession`).
        .library(name: "LongHeads", targets: ["LongHeads"]),
        .library(name: "KVStore", targets: ["KVStore"]),
        .library(name: "Pipeline", targets: ["Pipeline"]),
        .library(name: "Evaluation", targets: ["Evaluation"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Plain C with per-function target attributes: AVX2 / AVX-512 VNNI paths are chosen at run time.
        .target(name: "CKernels", cSettings: optimizedC),
        .target(name: "GGUF"),
        .target(name: "Tokenization", dependencies: ["GGUF"], swiftSettings: optimized),
        .target(name: "Kernels", dependencies: ["CKernels"], swiftSettings: optimized),
        .target(name: "Model", dependencies: ["GGUF", "Kernels", "CKernels"], swiftSettings: optimized),
        .target(name: "LongHeads", dependencies: ["Model", "Kernels", "CKernels"], swiftSettings: optimized),
        .target(name: "Generation", dependencies: ["Model", "Tokenization"], swiftSettings: optimized),
        .target(name: "ModelCache"),
        // On-disk KV store of a long document: LZ4 pages, mapped features, crash-safe commits (LONGHEADS.md).
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .target(name: "CStoreSupport", cSettings: optimizedC),
        .target(name: "KVStore", dependencies: ["CLZ4", "CStoreSupport"], swiftSettings: optimized),
        // Documents: ingest into a store, open it, answer questions (LongHeads over KVStore).
        .target(name: "Pipeline", dependencies: ["GGUF", "Tokenization", "Model", "LongHeads", "Generation", "KVStore"]),
        // Corpora: many segment stores, a manifest and a corpus-wide BM25 index; questions routed across them (Docs/CORPUS.md).
        .target(name: "Corpus", dependencies: ["Pipeline", "KVStore", "CStoreSupport", "LongHeads", "Generation", "GGUF"]),
        // Benchmarks of long-context reading: passkey and needle-in-a-haystack generators, trial loops, tallies, plots.
        .target(name: "Evaluation", dependencies: ["Pipeline", "LongHeads", "KVStore", "Model", "Generation", "Tokenization"]),
        .executableTarget(
            name: "longheads",
            dependencies: [
                "GGUF", "Tokenization", "Model", "Generation", "ModelCache", "LongHeads", "KVStore", "Pipeline", "Corpus", "Evaluation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Tiny generated GGUF models and a plain-float reference forward pass, shared by the test targets.
        .target(name: "TestSupport", dependencies: ["GGUF", "Kernels", "Model", "LongHeads", "ModelCache"], path: "Tests/TestSupport", swiftSettings: optimized),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF"]),
        .testTarget(name: "TokenizationTests", dependencies: ["Tokenization", "GGUF", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "CKernels"], resources: [.copy("Fixtures")]),
        .testTarget(name: "KVStoreTests", dependencies: ["KVStore", "CStoreSupport", "TestSupport"]),
        .testTarget(name: "ModelTests", dependencies: ["Model", "LongHeads", "Generation", "GGUF", "Tokenization", "ModelCache", "Kernels", "TestSupport",
                                                   "CStoreSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "CLITests", dependencies: ["longheads", "TestSupport", "GGUF", "ModelCache", "Pipeline", "Corpus", "Evaluation"],
                    resources: [.copy("Fixtures")]),
        // Docs/LIBRARY.md's example, against the library products only.
        .testTarget(name: "LibraryExampleTests", dependencies: ["Pipeline", "GGUF", "Model", "Tokenization", "LongHeads", "TestSupport"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Pipeline", "TestSupport", "GGUF", "Tokenization", "Model", "LongHeads",
                                                            "Generation", "KVStore", "ModelCache"]),
    ]
)
