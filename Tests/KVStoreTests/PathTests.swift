import Testing
@testable import KVStore

/// `parentDirectory(of:)` follows POSIX dirname(3); Foundation's `deletingLastPathComponent` trapped on "x".
@Suite struct PathTests {
    @Test func parentDirectoryOfRelativeAndAbsolutePaths() {
        let cases: [(String, String)] = [
            ("x", "."), ("x/", "."), ("ab", "."), ("", "."), ("./x", "."), ("a/b", "a"), ("a//b", "a"), ("a/b/", "a"),
            ("/x", "/"), ("/", "/"), ("//", "/"), ("/a/b/c", "/a/b"), ("é/ü", "é"),
        ]
        for (path, parent) in cases { #expect(parentDirectory(of: path) == parent, "\(path)") }
    }
}
