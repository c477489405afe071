import BatchCore
import CLinux
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension ServiceView {
    /// What the service could not do with a manifest's paths: inputs in a
    /// place it cannot see (its private /tmp), a destination it cannot write
    /// (read-only in its sandbox, or not writable by its user). Each issue
    /// names the field, the path and the fix. Linear in the manifest: one
    /// look per path it names, none per file a glob matches.
    public func issues(_ manifest: Manifest, base: String, destination: String) -> [ManifestIssue] {
        var out: [ManifestIssue] = []
        func input(_ field: String, _ pattern: String) {
            guard out.count < 10, let why = hidden(Self.fixedPart(pattern, base: base)) else { return }
            out.append(ManifestIssue(line: nil, column: nil, field: field, message: why, hint: Self.hiddenHint))
        }
        if let why = hidden(base) {
            out.append(ManifestIssue(line: nil, column: nil, field: "baseDirectory", message: why, hint: Self.hiddenHint))
        } else {
            for (i, p) in manifest.sharedInputs.enumerated() { input("inputs.shared[\(i)]", p) }
            switch manifest.tasks {
            case .forEachFile(let pattern, _): input("tasks.forEachFile", pattern)
            case .forEachRow(let file, _, _): input("tasks.forEachRow.file", file)
            case .list(let entries):
                for (i, e) in entries.enumerated() where out.count < 10 {
                    for (j, p) in e.inputs.enumerated() { input("tasks[\(i)].inputs[\(j)]", p) }
                }
            case .forEachInteger: break
            }
        }
        for (name, path) in manifest.secrets.sorted(by: { $0.key < $1.key }) { input("secrets.\(name)", path) }
        if !manifest.outputs.patterns.isEmpty, let why = unwritable(destination) {
            out.append(ManifestIssue(line: nil, column: nil, field: "outputs.destination", message: why,
                                     hint: writeHint(Self.deepestExisting(destination).path)))
        }
        return out
    }

    /// Why the service cannot write at `path`, looked at from the deepest
    /// part of it that exists here.
    public func unwritable(_ path: String) -> String? {
        if let why = hidden(path) { return why }
        let (existing, st) = Self.deepestExisting(path)
        // A directory the service may not look into (a submitter's own,
        // mode 0700) is still on a mount it can name.
        if st.st_mode == 0, let why = readOnly(existing) { return why }
        let fd = open(existing, batchd_O_PATH | O_CLOEXEC)
        guard fd >= 0 else { return nil }  // the submitter's own check reports what cannot be reached
        defer { close(fd) }
        return unwritable(path, existing: existing, st: st, fd: fd)
    }

    /// The deepest existing directory of `path` (absolute) and its status;
    /// or the first one this process may not look at (a zero status).
    static func deepestExisting(_ path: String) -> (path: String, st: stat) {
        var p = path
        var st = stat()
        while stat(p, &st) != 0 && p != "/" {
            if errno != ENOENT && errno != ENOTDIR { return (p, stat()) }
            p = (p as NSString).deletingLastPathComponent
            if p.isEmpty { p = "/" }
        }
        return (p, st)
    }

    /// The part of a path pattern before its first glob character or
    /// placeholder, made absolute against `base`.
    static func fixedPart(_ pattern: String, base: String) -> String {
        let cut = pattern.firstIndex { "*?[{".contains($0) }.map { pattern[..<$0] } ?? pattern[...]
        let dir = cut.contains("/") && cut.last != "/" && cut.endIndex != pattern.endIndex
            ? String(cut[..<cut.lastIndex(of: "/")!]) : String(cut)
        let absolute = dir.hasPrefix("/") ? dir : "\(base)/\(dir)"
        return URL(fileURLWithPath: absolute).standardizedFileURL.path
    }
}
