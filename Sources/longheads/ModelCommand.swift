import ArgumentParser
import Foundation
import ModelCache

/// `longheads model`: list, fetch and locate the named models of the catalog (ModelCache).
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "List, fetch or locate the named models.",
        subcommands: [List.self, Fetch.self, Path.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One line per model: name, size, cached or missing, cache path, description (default marked *).")
        func run() throws {
            for line in ModelCache().listLines() { try Output.line(line) }
        }
    }

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch a model into the cache, verifying every part and the whole (no-op if cached); prints its path.")
        @Argument(help: "Model name (default: the default model; see `longheads model list`).")
        var name: String?
        @Flag(name: .long, help: "Fetch again even if cached.") var force = false
        func run() throws {
            try guarded {
                let m = try PublishedModel.lookup(name)
                let cache = ModelCache()
                let p = force ? try cache.fetch(m, log: log) : try cache.ensure(m, log: log)
                try Output.line(p)
            }
        }
    }

    struct Path: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print where a model is (or would be) cached.")
        @Argument(help: "Model name (default: the default model).")
        var name: String?
        func run() throws {
            try guarded { try Output.line(ModelCache().path(of: try PublishedModel.lookup(name))) }
        }
    }
}
