// The usage example of Docs/LIBRARY.md, compiled and run by LibraryExampleTests: the text between the
// markers is quoted there verbatim (the test checks that it still is).
// BEGIN EXAMPLE
import GGUF
import Model
import Pipeline
import Tokenization

/// Reads `text` into a store at `storeDirectory` with the GGUF model at `modelPath`, then asks `question`.
func askAboutText(_ text: String, question: String, modelPath: String, storeDirectory: String) throws -> Answer {
    // The model and its tokenizer, from one GGUF file (the weights are memory-mapped).
    let file = try GGUFFile(path: modelPath)
    let model = try LlamaModel(file: file, threads: 2, maxBatch: 256)
    let pipeline = DocumentPipeline(model: model, tokenizer: try Tokenizer(gguf: file), budgetBytes: 256 << 20)

    // Read the document once into an on-disk KV store (LZ4 pages, crash-safe commits).
    try pipeline.ingest(source: DocumentSource(bytes: Array(text.utf8), name: "notes.txt"), to: storeDirectory,
                        modelFile: file, parameters: .default, precision: .default, chat: true)

    // Open the store once, then ask any number of questions; each starts from the document alone.
    let session = try DocumentSession(pipeline: pipeline, store: storeDirectory)
    let answer = try session.ask(question, options: AskOptions(maxTokens: 32, sources: 3))
    for source in answer.sources {
        print("drew on bytes \(source.start)..<\(source.end) (chunk \(source.chunk))")
    }
    return answer
}
// END EXAMPLE
