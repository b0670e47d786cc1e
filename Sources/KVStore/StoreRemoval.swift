#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension StoreWriter {
    /// Deletes the files a store consists of in `path` (header, its temporary, pages, page table, features,
    /// tokens), then, if `directory`, `path` itself when that leaves it empty. For a caller that created the
    /// store and must take it back (an ingest that failed before committing a chunk); anything else in the
    /// directory is left alone, and so is the directory then.
    public static func removeStoreFiles(at path: String, directory: Bool) {
        let n = StoreCore.fileNames
        for name in [HeaderFile.name, HeaderFile.newName, n.pages, n.table, n.features, n.tokens] {
            unlink(joinPath(path, name))
        }
        if directory { rmdir(path) }
    }
}
