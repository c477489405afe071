import Foundation

/// What task expansion needs from the file system: a port, so the core stays
/// free of I/O and tests can give it a fixed tree. Its errors say what went
/// wrong in words that name the path; expansion adds the field.
public protocol ManifestFileSystem: Sendable {
    /// Regular files matching a glob (see `Glob`), as absolute paths, sorted.
    /// Throws when the walk would look at too many entries
    /// (`Bounds.globEntries` for all globs of one job together).
    func glob(_ pattern: String, base: String) throws -> [String]
    /// A file's text; throws when it is longer than `maxBytes`.
    func readText(_ path: String, maxBytes: Int) throws -> String
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
    public static let maxTasks = Bounds.tasks

    let fs: any ManifestFileSystem
    /// Whether errors may quote what other files hold (a row file's column
    /// names). `batchctl`, run by the submitter, may; the daemon, whose
    /// errors land in files, does not.
    let revealFileContent: Bool

    /// An expander reading through `fs`.
    public init(fs: any ManifestFileSystem, revealFileContent: Bool = true) {
        self.fs = fs
        self.revealFileContent = revealFileContent
    }

    /// Reads the manifest's task source (globs, row files) and checks what
    /// can be checked before any task is made: the shared inputs, the count,
    /// the command templates. Errors name the field and say what to change.
    public func plan(_ m: Manifest, base: String, jobID: String, file: String) throws(ManifestError) -> TaskPlan {
        func fail(_ field: String, _ message: String, _ hint: String? = nil) -> ManifestError {
            ManifestError(file: file, issues: [ManifestIssue(line: nil, column: nil, field: field, message: message, hint: hint)])
        }
        func files(_ pattern: String, _ field: String) throws(ManifestError) -> [InputFile] {
            let found: [String]
            do { found = try fs.glob(pattern, base: base) } catch {
                throw fail(field, "\(error)")
            }
            if found.isEmpty {
                throw fail(field, "\(Printable.quote(pattern)) matches no file in \(pattern.hasPrefix("/") ? "/" : Printable.escape(base))",
                           "check the path; relative paths start at the manifest's directory")
            }
            return found.map { InputFile(source: $0, target: Self.target(for: $0, base: base)) }
        }

        var shared: [InputFile] = []
        for (i, pattern) in m.sharedInputs.enumerated() {
            shared += try files(pattern, "inputs.shared[\(i)]")
        }
        // Per-task placeholder values and inputs, before ids and commands.
        var rows: [TaskPlan.Row] = []
        // forEachInteger: made one at a time as tasks are made, not held.
        var integers: (from: Int, step: Int, count: Int)?
        var idTemplate: String?
        var entries: [TaskEntry] = []
        switch m.tasks {
        case .list(let list):
            entries = list
            for (i, entry) in list.enumerated() {
                var inputs: [InputFile] = []
                for (k, pattern) in entry.inputs.enumerated() { inputs += try files(pattern, "tasks[\(i)].inputs[\(k)]") }
                rows.append(TaskPlan.Row(values: [:], inputs: inputs, entry: i))
            }
        case .forEachFile(let pattern, let id):
            idTemplate = id
            for f in try files(pattern, "tasks.forEachFile") {
                let name = (f.target as NSString).lastPathComponent
                let stem = (name as NSString).deletingPathExtension
                rows.append(TaskPlan.Row(values: ["file": f.target, "name": name, "stem": stem], inputs: [f], entry: nil))
            }
        case .forEachInteger(let from, let to, let step, let id):
            idTemplate = id
            integers = (from, step, to < from ? 0 : (to - from) / step + 1)
        case .forEachRow(let path, let format, let id):
            idTemplate = id
            let absolute = path.hasPrefix("/") ? path : (base as NSString).appendingPathComponent(path)
            let text: String
            do { text = try fs.readText(absolute, maxBytes: Bounds.rowFileBytes) } catch {
                throw fail("tasks.forEachRow.file", "\(error)", "check the path; relative paths start at the manifest's directory")
            }
            let parsed = try Self.rows(text, format: format, path: path, file: file)
            let used = Set(([m.command ?? ""] + Array(m.env.values) + [idTemplate ?? ""]).flatMap(Template.placeholders(in:))
                .filter { $0.hasPrefix("row.") }.map { String($0.dropFirst(4)) })
            if let firstRow = parsed.first {
                for column in used.sorted() where firstRow[column] == nil {
                    let hint = !revealFileContent ? "column names are matched exactly; check the file's first row"
                        : Suggest.nearest(to: column, in: Array(firstRow.keys)).map { "did you mean {row.\($0)}?" }
                            ?? "columns: \(firstRow.keys.sorted().map { Printable.escape($0) }.joined(separator: ", "))"
                    throw fail("command", "{row.\(column)}: \(Printable.quote(path)) has no column '\(column)'", hint)
                }
            }
            for row in parsed { rows.append(TaskPlan.Row(values: Dictionary(uniqueKeysWithValues: row.map { ("row.\($0.key)", $0.value) }), inputs: [], entry: nil)) }
        }
        let count = integers?.count ?? rows.count
        if count == 0 { throw fail("tasks", "no tasks", "the task source produced nothing") }
        if count > Self.maxTasks { throw fail("tasks", "\(count) tasks is more than the limit of \(Self.maxTasks)") }

        // Each command template is read once (its placeholders' quoting contexts).
        func shell(_ text: String, _ field: String) throws(ManifestError) -> ShellTemplate {
            do { return try ShellTemplate(text) } catch { throw fail(field, error.message, error.hint) }
        }
        let mainCommand = try shell(m.command ?? "", "command")
        var entryCommands: [Int: ShellTemplate] = [:]
        for (i, e) in entries.enumerated() { if let c = e.command { entryCommands[i] = try shell(c, "tasks[\(i)].command") } }

        return TaskPlan(sharedInputs: shared, count: count, rows: rows, integers: integers, idTemplate: idTemplate, entries: entries,
                        mainCommand: mainCommand, entryCommands: entryCommands, env: m.env,
                        params: Dictionary(uniqueKeysWithValues: m.parameters.map { ("param.\($0.key)", $0.value) }), jobID: jobID, file: file,
                        revealFileContent: revealFileContent)
    }

    /// Expands the manifest into every task at once (for `batchctl plan`
    /// and tests; the daemon streams a `plan` into the database instead).
    public func expand(_ m: Manifest, base: String, jobID: String, file: String) throws(ManifestError) -> ExpandedJob {
        let plan = try plan(m, base: base, jobID: jobID, file: file)
        var tasks: [TaskSpec] = []
        tasks.reserveCapacity(plan.count)
        do { try plan.forEach { tasks.append($0) } } catch let e as ManifestError { throw e } catch { preconditionFailure("\(error)") }
        return ExpandedJob(sharedInputs: plan.sharedInputs, tasks: tasks)
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
            if header.count > Bounds.rowColumns { throw fail("\(header.count) columns; at most \(Bounds.rowColumns) are allowed") }
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
                if object.count > Bounds.rowColumns { throw fail("line \(n + 1) has \(object.count) keys; at most \(Bounds.rowColumns) are allowed") }
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

/// A job's tasks, ready to be made one at a time: `forEach` renders each in
/// order, so a job of a million tasks need not be held in memory at once.
public struct TaskPlan: Sendable {
    /// One task's placeholder values, own inputs and `tasks:` entry.
    struct Row: Sendable { var values: [String: String]; var inputs: [InputFile]; var entry: Int? }

    /// Files staged into every task.
    public let sharedInputs: [InputFile]
    /// How many tasks `forEach` makes.
    public let count: Int
    let rows: [Row]
    let integers: (from: Int, step: Int, count: Int)?
    let idTemplate: String?
    let entries: [TaskEntry]
    let mainCommand: ShellTemplate
    let entryCommands: [Int: ShellTemplate]
    let env: [String: String]
    /// `param.NAME` → value, the same for every task.
    let params: [String: String]
    let jobID: String
    let file: String
    let revealFileContent: Bool

    func fail(_ field: String, _ message: String, _ hint: String? = nil) -> ManifestError {
        ManifestError(file: file, issues: [ManifestIssue(line: nil, column: nil, field: field, message: message, hint: hint)])
    }

    /// Makes each task in order and hands it to `body`; throws the first
    /// `ManifestError` (an invalid or repeated id, a command too long), or
    /// what `body` throws.
    public func forEach(_ body: (TaskSpec) throws -> Void) throws {
        // Ids need checking for repeats only when a template or the list makes them.
        var seen: [String: Int]? = integers != nil && idTemplate == nil ? nil : [:]
        var total = 0
        // forEachInteger with a fixed command and no id template or env (a
        // sweep whose command reads BATCHD_TASK_INDEX) needs no placeholder
        // values: each task is its index and the command.
        let fixed: String? = integers != nil && idTemplate == nil && env.isEmpty && mainCommand.placeholders.isEmpty
            ? try? mainCommand.render([:]) : nil
        for index in 0..<count {
            let id: String, command: String, env: [String: String], inputs: [InputFile]
            if let fixed {
                (id, command, env, inputs) = (String(index), fixed, [:], [])
            } else {
                let row: Row
                if let integers {
                    row = Row(values: ["i": String(integers.from + index * integers.step)], inputs: [], entry: nil)
                } else {
                    row = rows[index]
                }
                var values = row.values
                if !params.isEmpty { values.merge(params) { row, _ in row } }
                values["index"] = String(index)
                values["job"] = jobID
                let entry = row.entry.map { entries[$0] }
                var made = entry?.id ?? String(index)
                if entry == nil, let idTemplate {
                    do { made = try Template.render(idTemplate, values: values) } catch { throw fail("tasks.id", error.message) }
                }
                guard Template.isIdentifier(made, max: 64) else {
                    let shown = revealFileContent ? " \(Printable.quote(made))" : ""
                    throw fail("tasks.id", "task \(index) would get the id\(shown), which is not valid", "ids use 1-64 letters, digits, '-' and '_'")
                }
                if let other = seen?[made] { throw fail("tasks.id", "tasks \(other) and \(index) would both get the id '\(made)'", "make the id template unique, e.g. add {index}") }
                seen?[made] = index
                values["task"] = made
                let template = row.entry.flatMap { entryCommands[$0] } ?? mainCommand
                var rendered: [String: String] = [:]
                do throws(TemplateError) {
                    command = try template.render(values)
                    for (k, v) in self.env.merging(entry?.env ?? [:], uniquingKeysWith: { $1 }) {
                        let value = try Template.render(v, values: values)
                        if value.utf8.contains(0) { throw TemplateError(message: "env.\(k) would contain a NUL byte, which no environment can carry", hint: nil) }
                        rendered[k] = value
                    }
                } catch { throw fail("command", "task \(made): \(error.message)") }
                (id, env, inputs) = (made, rendered, row.inputs)
            }
            var size = command.utf8.count + 1
            if command.utf8.count > Bounds.commandBytes {
                throw fail("command", "task \(id): the command comes to \(command.utf8.count) bytes with its values filled in; at most \(Bounds.commandBytes) can be run",
                           "pass large values in a file, or through env")
            }
            for (k, v) in env {
                let entryBytes = k.utf8.count + 1 + v.utf8.count
                if entryBytes > Bounds.envEntryBytes {
                    throw fail("env.\(k)", "task \(id): \(entryBytes) bytes with its values filled in; one variable may have at most \(Bounds.envEntryBytes)")
                }
                size += entryBytes + 1
            }
            if size > Bounds.execBytes {
                throw fail("env", "task \(id): command and environment come to \(size) bytes; at most \(Bounds.execBytes) (1 MiB) fit", "pass large values in a file")
            }
            total += size + id.utf8.count + inputs.reduce(0) { $0 + $1.source.utf8.count + $1.target.utf8.count }
            if total > Bounds.expandedBytes {
                throw fail("tasks", "the job's tasks come to more than \(Bounds.expandedBytes >> 20) MiB of commands and environment",
                           "make commands shorter, or pass per-task data in files")
            }
            try body(TaskSpec(index: index, id: id, command: command, env: env, inputs: inputs))
        }
    }
}
