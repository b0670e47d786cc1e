import ArgumentParser
import Foundation
import ModelCache

/// `longheads model`: list, fetch and locate the named models of the catalog (ModelCache).
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "List, fetch or locate the named models.",
        subcommands: [List.self, Fetch.self, Path.self])

    /// The catalog entry `name` (the default model when nil); unknown → exit 64 with the names.
    static func lookup(_ name: String?) throws -> PublishedModel {
        guard let name else { return PublishedModel.defaultModel }
        guard let m = PublishedModel.named(name) else {
            throw InputError(description: ModelCacheError.unknownModel(
                name: name, known: PublishedModel.catalog.map(\.name)).description, code: Exit.usage)
        }
        return m
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One line per model: name, size, cached or missing, cache path, description (default marked *).")
        func run() throws {
            let cache = ModelCache()
            let width = PublishedModel.catalog.map(\.name.count).max() ?? 0
            for m in PublishedModel.catalog {
                let name = m.name + (m == PublishedModel.defaultModel ? "*" : "")
                let size = String(format: "%5.0f MB", Double(m.size) / 1e6)
                let state = cache.cachedPath(of: m) != nil ? "cached " : "missing"
                try Output.line("\(name.padding(toLength: width + 1, withPad: " ", startingAt: 0))  \(size)  \(state)  \(cache.path(of: m))  \(m.summary)")
            }
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
                let m = try ModelCommand.lookup(name)
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
            try guarded { try Output.line(ModelCache().path(of: try ModelCommand.lookup(name))) }
        }
    }
}
