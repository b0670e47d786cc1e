import Foundation
import TestSupport
import Testing

/// ingest → verify → ask on a tiny model, and the store's failure modes, through the CLI.
@Suite struct StoreCLITests {
    static let document = (0..<60).map { "Line \($0): the quick brown fox jumps over the lazy dog." }.joined(separator: "\n")

    func ingest(model: String, store: String, extra: [String] = []) throws -> CLIRun {
        let doc = temp("doc-\(UUID().uuidString.prefix(6)).txt")
        try Self.document.write(toFile: doc, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: doc) }
        return try longheads(["ingest", doc, "--store", store, "--model", model, "--chunk", "16", "--attention", "64"] + extra)
    }

    @Test func ingestVerifyAskAndCorruption() throws {
        let model = try TinyModel().write(name: "store-cli")
        let store = temp("store-\(UUID().uuidString.prefix(6))")
        defer { for p in [model, store] { try? FileManager.default.removeItem(atPath: p) } }
        let r = try ingest(model: model, store: store)
        #expect(r.status == 0, "\(r.stderr)")
        let info = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect((info["tokens"] as! Int) > 3000)
        #expect(try longheads(["verify", "--store", store]).status == 0)
        let a1 = try longheads(["ask", "--store", store, "--model", model, "--max-tokens", "6", "What does the fox do?"])
        #expect(a1.status == 0, "\(a1.stderr)")
        // Asking again from a new process gives the same answer (the store is read-only to ask).
        let a2 = try longheads(["ask", "--store", store, "--model", model, "--max-tokens", "6", "What does the fox do?"])
        #expect(a2.stdout == a1.stdout)
        #expect(try longheads(["verify", "--store", store]).status == 0)

        // A flipped byte in the middle of the pages file: verify names it, and so does ask when it reads it.
        let pages = store + "/" + (try FileManager.default.contentsOfDirectory(atPath: store).first { $0.hasPrefix("pages") }!)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: pages)))
        bytes[bytes.count / 2] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: pages))
        let v = try longheads(["verify", "--store", store])
        #expect(v.status == 65)
        #expect(v.stderr.contains("pages"), "\(v.stderr)")
        // Ask reads only what heads select, but always the last chunk (the previous chunk of the question):
        // damage its last page.
        bytes[bytes.count / 2] ^= 0x40
        bytes[bytes.count - 64] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: pages))
        let bad = try longheads(["ask", "--store", store, "--model", model, "--max-tokens", "4", "What does the fox do?"])
        #expect(bad.status == 65, "\(bad.stderr)")
        #expect(bad.stderr.contains("pages"), "\(bad.stderr)")
    }

    /// `quest-lexical` reads every chunk's token record for a question: a damaged one is named, exit 65,
    /// and `--policy quest` (no retrieval) still answers from the same store.
    @Test func damagedTokensRecordStopsRetrieval() throws {
        let model = try TinyModel().write(name: "store-tokens")
        let store = temp("store-\(UUID().uuidString.prefix(6))")
        defer { for p in [model, store] { try? FileManager.default.removeItem(atPath: p) } }
        #expect(try ingest(model: model, store: store).status == 0)
        let tokens = store + "/" + (try FileManager.default.contentsOfDirectory(atPath: store).first { $0.hasPrefix("tokens") }!)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: tokens)))
        bytes[bytes.count / 2] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: tokens))
        let bad = try longheads(["ask", "--store", store, "--model", model, "--max-tokens", "4", "What does the fox do?"])
        #expect(bad.status == 65, "\(bad.stderr)")
        #expect(bad.stderr.contains("tokens record of chunk"), "\(bad.stderr)")
        let plain = try longheads(["ask", "--store", store, "--model", model, "--max-tokens", "4", "--policy", "quest", "What does the fox do?"])
        #expect(plain.status == 0, "\(plain.stderr)")
    }

    /// A store ingested as `quest` answers as `quest` (its recorded policy), with a hint on stderr that
    /// `--policy quest-lexical` would retrieve; no hint when the policy is given or retrieves.
    @Test func questStoreHintsAtRetrieval() throws {
        let model = try TinyModel().write(name: "store-hint")
        let store = temp("store-\(UUID().uuidString.prefix(6))"), lexical = temp("store-\(UUID().uuidString.prefix(6))")
        defer { for p in [model, store, lexical] { try? FileManager.default.removeItem(atPath: p) } }
        #expect(try ingest(model: model, store: store, extra: ["--policy", "quest"]).status == 0)
        #expect(try ingest(model: model, store: lexical).status == 0)
        func ask(_ s: String, _ extra: [String] = []) throws -> CLIRun {
            try longheads(["ask", "--store", s, "--model", model, "--max-tokens", "3"] + extra + ["What does the fox do?"])
        }
        let hinted = try ask(store), given = try ask(store, ["--policy", "quest"]), retrieving = try ask(lexical)
        #expect(hinted.status == 0 && given.status == 0 && retrieving.status == 0)
        #expect(hinted.stderr.contains("--policy quest-lexical"), "\(hinted.stderr)")
        #expect(hinted.stdout == given.stdout)
        #expect(!given.stderr.contains("--policy quest-lexical") && !retrieving.stderr.contains("--policy quest-lexical"))
    }

    @Test func storeFromAnotherModelIsRefused() throws {
        let modelA = try TinyModel().write(name: "store-a")
        var other = TinyModel()
        other.seed = 99
        let modelB = try other.write(name: "store-b")
        let store = temp("store-\(UUID().uuidString.prefix(6))")
        defer { for p in [modelA, modelB, store] { try? FileManager.default.removeItem(atPath: p) } }
        #expect(try ingest(model: modelA, store: store).status == 0)
        let r = try longheads(["ask", "--store", store, "--model", modelB, "What?"])
        #expect(r.status == 65)
        #expect(r.stderr.contains("model"), "\(r.stderr)")
        // And an existing store is never overwritten by a new ingest.
        let again = try ingest(model: modelA, store: store)
        #expect(again.status != 0)
        #expect(try longheads(["verify", "--store", store]).status == 0)
    }
}
