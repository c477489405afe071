import BatchCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Finds a task's outputs and copies them to the job's destination, never
/// outside it.
public enum OutputCollector {
    /// Files in `workDir` matching any pattern, as relative paths, sorted.
    /// A match that is a symlink pointing outside `workDir` is an error.
    public static func find(in workDir: String, patterns: [String]) throws -> [String] {
        guard let root = FileOps.realPath(workDir) else { throw FileOpError(workDir, "task directory is missing") }
        let globs = patterns.map(Glob.init)
        var found: [String] = []
        func walk(_ rel: [String]) throws {
            let dir = ([root] + rel).joined(separator: "/")
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
            for name in names {
                let path = rel + [name]
                let full = "\(dir)/\(name)"
                var st = stat()
                guard lstat(full, &st) == 0 else { continue }
                let type = st.st_mode & S_IFMT
                if type == S_IFDIR {
                    try walk(path)
                    continue
                }
                guard globs.contains(where: { $0.matches(path) }) else { continue }
                let relative = path.joined(separator: "/")
                if type == S_IFLNK {
                    guard let target = FileOps.realPath(full), FileOps.isInside(target, root) else {
                        throw FileOpError(relative, "is a symlink that leads outside the task's directory; outputs must be files inside it")
                    }
                    var tst = stat()
                    guard stat(target, &tst) == 0, (tst.st_mode & S_IFMT) == S_IFREG else { continue }
                } else if type != S_IFREG {
                    continue
                }
                found.append(relative)
            }
        }
        try walk([])
        return found
    }

    /// Copies `relative` from `workDir` to the same relative path under
    /// `destination` (temp + fsync + rename). Refuses any path that would
    /// land outside `destination`, including through a symlinked directory.
    public static func copy(_ relative: String, from workDir: String, to destination: String) throws -> (sha256: String, size: Int64) {
        let parts = relative.split(separator: "/").map(String.init)
        guard !parts.isEmpty, !parts.contains(".."), !parts.contains("."), !relative.hasPrefix("/") else {
            throw FileOpError(relative, "output path reaches outside the destination")
        }
        try FileOps.makeDirectory(destination)
        guard let destRoot = FileOps.realPath(destination) else { throw FileOpError(destination, "destination is missing") }
        let target = "\(destRoot)/\(relative)"
        let parent = (target as NSString).deletingLastPathComponent
        try FileOps.makeDirectory(parent)
        guard let realParent = FileOps.realPath(parent), FileOps.isInside(realParent, destRoot) else {
            throw FileOpError(relative, "would land outside the destination \(destRoot) (a symlinked directory there?)")
        }
        var st = stat()
        if lstat(target, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK {
            unlink(target)  // replace a symlink rather than write through it
        }
        let (hex, size) = try FileOps.copy(from: "\(workDir)/\(relative)", to: "\(realParent)/\((target as NSString).lastPathComponent)")
        return (hex, size)
    }
}
