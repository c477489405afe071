import BatchCore
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The real file system as one submitter sees it, for task expansion: globs
/// list only directories the submitter may list and match only regular
/// files they may read; `**` does not follow symlinked directories (no
/// loops); every path goes through the submitter's `AccessPolicy`. One
/// instance serves one job: the directory entries its globs look at are
/// counted against `Bounds.globEntries`.
public final class LocalFileSystem: ManifestFileSystem {
    let policy: AccessPolicy
    let budget = Mutex(Bounds.globEntries)

    /// The file system as `policy`'s submitter may see it.
    public init(policy: AccessPolicy) { self.policy = policy }

    /// Regular files matching `pattern` below `base` (or `/` if absolute), sorted.
    public func glob(_ pattern: String, base: String) throws -> [String] {
        let glob = Glob(pattern)
        // The fixed directories before the first wildcard are walked through
        // the policy too, so an unreadable or refused one says why.
        var root = pattern.hasPrefix("/") ? "/" : base
        var rest = glob.components[...]
        while rest.count > 1, let head = rest.first, !Glob.hasWildcard(head), head != "**" {
            root = join(root, head)
            rest = rest.dropFirst()
        }
        if rest.count == 1, let only = rest.first, !Glob.hasWildcard(only), only != "**" {
            // A plain path: the file itself, or a clear reason.
            let path = join(root, only)
            try policy.checkReadable(path)
            return [standardized(path)]
        }
        // The directory the walk starts from must be one the submitter may
        // list; below it, what they may not list is skipped, as a shell's glob would.
        try policy.checkListable(root)
        var out: [String] = []
        try walk(root, rest, &out)
        // `a/../b` in a pattern is walked literally; report the plain path.
        return Set(out.map(standardized)).sorted()
    }

    func join(_ dir: String, _ name: String) -> String { dir == "/" ? "/\(name)" : "\(dir)/\(name)" }

    func standardized(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.path }

    private func walk(_ dir: String, _ rest: ArraySlice<String>, _ out: inout [String]) throws {
        guard let head = rest.first else { return }
        let tail = rest.dropFirst()
        if head == "**" {
            try walk(dir, tail, &out)
            for name in try entries(dir) where !name.hasPrefix(".") {
                let path = join(dir, name)
                if policy.kind(of: path, followLast: false) == .directory { try walk(path, rest, &out) }
            }
            return
        }
        let names = Glob.hasWildcard(head) ? try entries(dir).filter { Glob.component(head, $0) } : [head]
        for name in names {
            let path = join(dir, name)
            if tail.isEmpty {
                if (try? policy.checkReadable(path)) != nil { out.append(path) }
            } else if policy.kind(of: path) == .directory {
                try walk(path, tail, &out)
            }
        }
    }

    /// A directory's names, if the submitter may list it (else none: a
    /// walk skips what they could not see), counted against the budget.
    private func entries(_ dir: String) throws -> [String] {
        guard let names = try? policy.list(dir) else { return [] }
        let left = budget.withLock { b -> Int in
            b -= names.count
            return b
        }
        if left < 0 {
            throw AccessError("the job's patterns look at more than \(Bounds.globEntries) directory entries (the last in \(Printable.escape(dir))); narrow them")
        }
        return names.sorted()
    }

    /// A file's text (UTF-8), if the submitter may read it and it is at most `maxBytes`.
    public func readText(_ path: String, maxBytes: Int) throws -> String {
        let bytes = try policy.readFile(path, maxBytes: maxBytes)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw AccessError("\(Printable.escape(path)) is not UTF-8 text")
        }
        return text
    }
}
