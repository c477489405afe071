import BatchCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The real file system, for task expansion: globs walk directories without
/// following symlinked directories (no loops), and match regular files.
public struct LocalFileSystem: ManifestFileSystem {
    /// The file system.
    public init() {}

    /// Regular files matching `pattern` below `base` (or `/` if absolute), sorted.
    public func glob(_ pattern: String, base: String) throws -> [String] {
        let root = pattern.hasPrefix("/") ? "/" : base
        let glob = Glob(pattern)
        var out: [String] = []
        walk(root, glob.components[...], &out)
        // `a/../b` in a pattern is walked literally; report the plain path.
        return Set(out.map { URL(fileURLWithPath: $0).standardizedFileURL.path }).sorted()
    }

    private func walk(_ dir: String, _ rest: ArraySlice<String>, _ out: inout [String]) {
        guard let head = rest.first else { return }
        let tail = rest.dropFirst()
        func join(_ name: String) -> String { dir == "/" ? "/\(name)" : "\(dir)/\(name)" }
        if head == "**" {
            walk(dir, tail, &out)
            for name in entries(dir) where !name.hasPrefix(".") {
                let path = join(name)
                if isRealDirectory(path) { walk(path, rest, &out) }
            }
            return
        }
        let names = Glob.hasWildcard(head) ? entries(dir).filter { Glob.component(head, $0) } : [head]
        for name in names {
            let path = join(name)
            if tail.isEmpty {
                if isRegularFile(path) { out.append(path) }
            } else if isDirectory(path) {
                walk(path, tail, &out)
            }
        }
    }

    private func entries(_ dir: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    }

    private func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    private func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    private func isRealDirectory(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// A file's text (UTF-8).
    public func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FileOpError(path, "cannot read")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
