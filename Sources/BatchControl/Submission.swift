import BatchAccess
import BatchCore
import BatchSupport
import Foundation
import Yams
#if canImport(Glibc)
import Glibc
#endif

/// What `batchctl submit` does before the daemon sees anything: validate the
/// manifest (including its globs and row files), pin relative paths to the
/// manifest's own directory, and write it into the inbox atomically. Works
/// while the daemon is down: the inbox keeps it.
public enum Submission {
    /// A validated manifest, ready for the inbox.
    public struct Prepared: Sendable {
        /// The text to write (the user's own, plus `baseDirectory:` / `backend:`).
        public var text: String
        /// The manifest read once: parsed, resolved, its tasks checked.
        public var plan: IntakePlan
        /// The manifest.
        public var manifest: Manifest { plan.manifest }
        /// How many tasks it makes.
        public var taskCount: Int { plan.taskCount }
        /// `yaml` or `json`.
        public var fileExtension: String
    }

    /// The rule batchctl checks a manifest's files with: the daemon's, for
    /// the user running batchctl (the daemon checks again as the owner of the
    /// file in the inbox).
    public static func policy(_ config: DaemonConfig) -> AccessPolicy {
        AccessPolicy(submitter: .current(), protected: config.protectedDirectories(credentials: nil))
    }

    /// Validates `path` and returns the text to submit.
    /// `set`: parameter values (`--set NAME=VALUE`), written into the
    /// manifest's `parameters:` so the daemon sees them. `view`: the file
    /// system as the daemon sees it (asked over the control socket): paths
    /// it cannot use (its private /tmp, a destination read-only in its
    /// sandbox) are refused here, with the fix, as the daemon would. Every
    /// task is made once, to report here what the daemon would reject, and
    /// handed to `each` (none is kept: a million-task job costs no memory here).
    public static func prepare(path: String, backend: String?, config: DaemonConfig, set: [String: String] = [:],
                               view: ServiceView? = nil, each: (TaskSpec) -> Void = { _ in }) throws -> Prepared {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let name = (path as NSString).lastPathComponent
        let bytes: [UInt8]
        do { bytes = try AccessPolicy(submitter: .current(), protected: []).readFile(absolute, maxBytes: Bounds.manifestBytes) } catch {
            throw DaemonError("\(Printable.escape(path)): \(error)")
        }
        let text = try ManifestParser.text(of: bytes, file: name)
        let catalog = BackendCatalogFile.load(config)
        if let backend, !catalog.isOpen, !catalog.names.contains(backend) {
            throw DaemonError("--backend \(backend): unknown backend (one of: \(catalog.names.joined(separator: ", ")))")
        }
        let plan = try IntakePlan.make(text: text, file: name, catalog: catalog, types: config.jobTypes, set: set, backend: backend,
                                       defaultBackend: config.defaultBackend, base: (absolute as NSString).deletingLastPathComponent,
                                       policy: policy(config), view: view, jobID: "check", reveal: true)
        try plan.tasks.forEach(each)
        let (manifest, base) = (plan.manifest, plan.base)

        var additions: [(String, Any)] = []
        if manifest.baseDirectory == nil { additions.append(("baseDirectory", base)) }
        if let backend { additions.append(("backend", backend)) }
        let isJSON = name.lowercased().hasSuffix(".json")
        let source = isJSON ? text.replacingOccurrences(of: "\t", with: " ") : text
        if !set.isEmpty {
            // The manifest's own parameters, with the --set values over them.
            var own: [String: String] = [:]
            for (k, v) in (try? ManifestParser.compose(source))??.mapping?["parameters"]?.mapping ?? [:] {
                if let k = k.string, let v = v.scalar?.string { own[k] = v }
            }
            additions.append(("parameters", own.merging(set) { $1 }))
        }
        var out = text
        var ext = isJSON ? "json" : "yaml"
        // libyaml reports a block mapping's style as `any`; only `flow` ({...}, JSON) is not block.
        if let root = try ManifestParser.compose(source), let map = root.mapping, map.style != .flow,
           let edited = editBlock(text, map, additions) {
            out = edited
            ext = "yaml"
        } else {
            guard var object = try Yams.load(yaml: source) as? [String: Any] else {
                throw DaemonError("\(path): expected a mapping at the top")
            }
            for (k, v) in additions { object[k] = v }
            let json = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            out = String(decoding: json, as: UTF8.self) + "\n"
            ext = "json"
        }
        return Prepared(text: out, plan: plan, fileExtension: ext)
    }

    /// Adds or replaces top-level keys of a block mapping line by line, so the
    /// user's comments and layout stay. Nil when a key to replace spans lines.
    static func editBlock(_ text: String, _ map: Node.Mapping, _ additions: [(String, Any)]) -> String? {
        var lines = text.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        for (key, value) in additions {
            let written: String
            if let s = value as? String {
                written = quote(s)
            } else if let d = value as? [String: String] {
                written = "{" + d.keys.sorted().map { "\(quote($0)): \(quote(d[$0]!))" }.joined(separator: ", ") + "}"
            } else {
                return nil
            }
            let line = "\(key): \(written)"
            if let (k, v) = map.first(where: { $0.key.string == key }) {
                guard let kl = k.mark?.line, v.mark?.line == kl, v.scalar != nil, kl - 1 < lines.count else { return nil }
                lines[kl - 1] = line
            } else {
                lines.append(line)
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A YAML double-quoted scalar (valid JSON string syntax too).
    static func quote(_ s: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [s])) ?? Data("[\"\"]".utf8)
        let json = String(decoding: data, as: UTF8.self)
        return String(json.dropFirst().dropLast()).replacingOccurrences(of: "\\/", with: "/")
    }

    /// Writes the text into the inbox under a unique name (a dot-file first,
    /// then a rename, so the daemon never sees half a file). Returns the name.
    public static func write(_ prepared: Prepared, inbox: String) throws -> String {
        guard FileManager.default.fileExists(atPath: inbox) else {
            throw DaemonError("the inbox \(inbox) does not exist (has batchd run with this config?)")
        }
        let stem = prepared.manifest.name
        let name = "\(stem)-\(String(format: "%08x", UInt32.random(in: 0...UInt32.max))).\(prepared.fileExtension)"
        let tmp = "\(inbox)/.\(name).tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(prepared.text.utf8), attributes: [.posixPermissions: 0o664]) else {
            throw DaemonError("cannot write into the inbox \(inbox): \(String(cString: strerror(errno)))")
        }
        let fd = open(tmp, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            // The inbox's group (the daemon's) may read it, whatever the
            // submitter's umask; the inbox has no set-group-id bit to do it
            // (the system unit's RestrictSUIDSGID=yes refuses one). Failing
            // that (not in the group), the mode the umask gave stays.
            var inboxStat = stat()
            if stat(inbox, &inboxStat) == 0, fchown(fd, UInt32.max, inboxStat.st_gid) == 0 { fchmod(fd, 0o640) }
            fsync(fd)
            close(fd)
        }
        guard rename(tmp, "\(inbox)/\(name)") == 0 else {
            unlink(tmp)
            throw DaemonError("cannot move the manifest into the inbox: \(String(cString: strerror(errno)))")
        }
        FileOps.syncDirectory(inbox)
        return name
    }
}
