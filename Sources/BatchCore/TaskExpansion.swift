import Foundation

/// What task expansion needs from the file system: a port, so the core stays
/// free of I/O and tests can give it a fixed tree.
public protocol ManifestFileSystem: Sendable {
    /// Regular files matching a glob (see `Glob`), as absolute paths, sorted.
    func glob(_ pattern: String, base: String) throws -> [String]
    /// A file's text.
    func readText(_ path: String) throws -> String
}

/// A file staged into a task's working directory.
public struct InputFile: Sendable, Equatable, Codable, Hashable {
    /// Absolute path on the workstation.
    public var source: String
    /// Path relative to the task's working directory.
    public var target: String

    /// Creates an input file mapping.
    public init(source: String, target: String) {
        self.source = source
        self.target = target
    }
}

/// One task, fully expanded: what the backend runs.
public struct TaskSpec: Sendable, Equatable, Codable {
    /// 0-based position in the job.
    public var index: Int
    /// Deterministic id, unique in the job.
    public var id: String
    /// The command, placeholders filled.
    public var command: String
    /// Environment: the manifest's, the task's, placeholders filled.
    public var env: [String: String]
    /// Files for this task only.
    public var inputs: [InputFile]

    /// Creates a task spec.
    public init(index: Int, id: String, command: String, env: [String: String], inputs: [InputFile]) {
        self.index = index
        self.id = id
        self.command = command
        self.env = env
        self.inputs = inputs
    }
}

/// A job's expansion: the shared inputs and every task.
public struct ExpandedJob: Sendable, Equatable {
    /// Files staged into every task.
    public var sharedInputs: [InputFile]
    /// The tasks in order.
    public var tasks: [TaskSpec]
}

/// Turns a manifest's task source into concrete tasks. Deterministic: the same
/// manifest and files give the same tasks with the same ids.
public struct TaskExpander: Sendable {
    /// The most tasks one job may have.
    public static let maxTasks = 1_000_000

    let fs: any ManifestFileSystem

    /// An expander reading through `fs`.
    public init(fs: any ManifestFileSystem) { self.fs = fs }

    /// Expands the manifest. Errors name the field and say what to change.
    public func expand(_ m: Manifest, base: String, jobID: String, file: String) throws(ManifestError) -> ExpandedJob {
        func fail(_ field: String, _ message: String, _ hint: String? = nil) -> ManifestError {
            ManifestError(file: file, issues: [ManifestIssue(line: nil, column: nil, field: field, message: message, hint: hint)])
        }
        func files(_ pattern: String, _ field: String) throws(ManifestError) -> [InputFile] {
            let found: [String]
            do { found = try fs.glob(pattern, base: base) } catch {
                throw fail(field, "cannot read '\(pattern)': \(error)")
            }
            if found.isEmpty {
                throw fail(field, "'\(pattern)' matches no file in \(pattern.hasPrefix("/") ? "/" : base)",
                           "check the path; relative paths start at the manifest's directory")
            }
            return found.map { InputFile(source: $0, target: Self.target(for: $0, base: base)) }
        }

        var shared: [InputFile] = []
        for (i, pattern) in m.sharedInputs.enumerated() {
            shared += try files(pattern, "inputs.shared[\(i)]")
        }
        // Per-task placeholder values and inputs, before ids and commands.
        var rows: [(values: [String: String], inputs: [InputFile], entry: TaskEntry?)] = []
        var idTemplate: String?
        switch m.tasks {
        case .list(let entries):
            for (i, entry) in entries.enumerated() {
                var inputs: [InputFile] = []
                for (k, pattern) in entry.inputs.enumerated() { inputs += try files(pattern, "tasks[\(i)].inputs[\(k)]") }
                rows.append(([:], inputs, entry))
            }
        case .forEachFile(let pattern, let id):
            idTemplate = id
            for f in try files(pattern, "tasks.forEachFile") {
                let name = (f.target as NSString).lastPathComponent
                let stem = (name as NSString).deletingPathExtension
                rows.append((["file": f.target, "name": name, "stem": stem], [f], nil))
            }
        case .forEachInteger(let from, let to, let step, let id):
            idTemplate = id
            for i in stride(from: from, through: to, by: step) { rows.append((["i": String(i)], [], nil)) }
        case .forEachRow(let path, let format, let id):
            idTemplate = id
            let absolute = path.hasPrefix("/") ? path : (base as NSString).appendingPathComponent(path)
            let text: String
            do { text = try fs.readText(absolute) } catch {
                throw fail("tasks.forEachRow.file", "cannot read '\(path)': \(error)", "check the path; relative paths start at the manifest's directory")
            }
            let parsed = try Self.rows(text, format: format, path: path, file: file)
            let used = Set(([m.command ?? ""] + Array(m.env.values) + [idTemplate ?? ""]).flatMap(Template.placeholders(in:))
                .filter { $0.hasPrefix("row.") }.map { String($0.dropFirst(4)) })
            if let firstRow = parsed.first {
                for column in used.sorted() where firstRow[column] == nil {
                    let hint = Suggest.nearest(to: column, in: Array(firstRow.keys)).map { "did you mean {row.\($0)}?" }
                        ?? "columns: \(firstRow.keys.sorted().joined(separator: ", "))"
                    throw fail("command", "{row.\(column)}: '\(path)' has no column '\(column)'", hint)
                }
            }
            for row in parsed { rows.append((Dictionary(uniqueKeysWithValues: row.map { ("row.\($0.key)", $0.value) }), [], nil)) }
        }
        if rows.isEmpty { throw fail("tasks", "no tasks", "the task source produced nothing") }
        if rows.count > Self.maxTasks { throw fail("tasks", "\(rows.count) tasks is more than the limit of \(Self.maxTasks)") }

        var tasks: [TaskSpec] = []
        tasks.reserveCapacity(rows.count)
        var seen: [String: Int] = [:]
        for (index, row) in rows.enumerated() {
            var values = row.values
            values["index"] = String(index)
            values["job"] = jobID
            var id = row.entry?.id ?? String(index)
            if row.entry == nil, let idTemplate {
                do { id = try Template.render(idTemplate, values: values) } catch { throw fail("tasks.id", error.message) }
            }
            guard Template.isIdentifier(id, max: 64) else {
                throw fail("tasks.id", "task \(index) would get the id '\(id)', which is not valid", "ids use 1-64 letters, digits, '-' and '_'")
            }
            if let other = seen[id] { throw fail("tasks.id", "tasks \(other) and \(index) would both get the id '\(id)'", "make the id template unique, e.g. add {index}") }
            seen[id] = index
            values["task"] = id
            let commandTemplate = row.entry?.command ?? m.command ?? ""
            do {
                let command = try Template.render(commandTemplate, values: values)
                var env: [String: String] = [:]
                for (k, v) in m.env.merging(row.entry?.env ?? [:], uniquingKeysWith: { $1 }) { env[k] = try Template.render(v, values: values) }
                tasks.append(TaskSpec(index: index, id: id, command: command, env: env, inputs: row.inputs))
            } catch { throw fail("command", "task \(id): \(error.message)") }
        }
        return ExpandedJob(sharedInputs: shared, tasks: tasks)
    }

    /// Where a source file lands in the task's directory: its path relative to
    /// the base directory when inside it, else its file name. Never a path
    /// with `..` or `.`, so an input cannot be placed outside the task's directory.
    public static func target(for source: String, base: String) -> String {
        let prefix = base.hasSuffix("/") ? base : base + "/"
        if source.hasPrefix(prefix) {
            let relative = String(source.dropFirst(prefix.count))
            let parts = relative.split(separator: "/")
            if !parts.isEmpty, !parts.contains(".."), !parts.contains(".") { return relative }
        }
        return (source as NSString).lastPathComponent
    }

    /// Parses a row file into column → value maps.
    public static func rows(_ text: String, format: RowFormat, path: String, file: String) throws(ManifestError) -> [[String: String]] {
        func fail(_ message: String) -> ManifestError {
            ManifestError(file: file, issues: [ManifestIssue(line: nil, column: nil, field: "tasks.forEachRow.file", message: "\(path): \(message)")])
        }
        switch format {
        case .csv:
            let records: [[String]]
            do { records = try CSV.parse(text) } catch { throw fail("line \(error.line): \(error.message)") }
            guard let header = records.first else { throw fail("empty; the first row must name the columns") }
            var out: [[String: String]] = []
            for (n, record) in records.dropFirst().enumerated() {
                guard record.count == header.count else {
                    throw fail("record \(n + 2) has \(record.count) fields, the header has \(header.count)")
                }
                out.append(Dictionary(zip(header, record), uniquingKeysWith: { a, _ in a }))
            }
            return out
        case .jsonl:
            var out: [[String: String]] = []
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty { continue }
                guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                    throw fail("line \(n + 1) is not a JSON object")
                }
                var row: [String: String] = [:]
                for (k, v) in object {
                    switch v {
                    case let s as String: row[k] = s
                    case is NSNull: row[k] = ""
                    case let n as NSNumber: row[k] = n.stringValue
                    default:
                        let data = (try? JSONSerialization.data(withJSONObject: v, options: [.sortedKeys])) ?? Data()
                        row[k] = String(decoding: data, as: UTF8.self)
                    }
                }
                out.append(row)
            }
            return out
        }
    }
}
