import Foundation

extension PublishedModel {
    /// The catalog entry `name`, or the default model when `name` is nil. An unknown name is
    /// `ModelCacheError.unknownModel`, listing the known names (`model fetch|path`: exit 64).
    public static func lookup(_ name: String?) throws(ModelCacheError) -> PublishedModel {
        guard let name else { return defaultModel }
        guard let m = named(name) else { throw .unknownModel(name: name, known: catalog.map(\.name)) }
        return m
    }
}

extension ModelCache {
    /// Resolves a `--model` value to a GGUF path: nil → the default model, a catalog name → its cached file
    /// (fetched and verified on first use, `ensure`), otherwise an existing file path. A name wins over a
    /// file of the same name (write `./NAME` for the file). Neither a name nor a file:
    /// `ModelCacheError.noSuchModel` (exit 66).
    public func resolve(_ value: String?, log: (String) -> Void) throws(ModelCacheError) -> String {
        guard let value else { return try ensure(PublishedModel.defaultModel, log: log) }
        if let known = PublishedModel.named(value) { return try ensure(known, log: log) }
        guard FileManager.default.fileExists(atPath: value) else {
            throw .noSuchModel(value: value, known: PublishedModel.catalog.map(\.name))
        }
        return value
    }

    /// The lines of `model list`: per catalog model its name (the default marked `*`, padded to the longest
    /// name), size in MB, `cached` or `missing`, cache path and description.
    public func listLines() -> [String] {
        let width = PublishedModel.catalog.map(\.name.count).max() ?? 0
        return PublishedModel.catalog.map { m in
            let name = m.name + (m == PublishedModel.defaultModel ? "*" : "")
            let size = String(format: "%5.0f MB", Double(m.size) / 1e6)
            let state = cachedPath(of: m) != nil ? "cached " : "missing"
            return "\(name.padding(toLength: width + 1, withPad: " ", startingAt: 0))  \(size)  \(state)  \(path(of: m))  \(m.summary)"
        }
    }
}
