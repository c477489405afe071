/// One problem found in a manifest, with where it is and how to fix it.
public struct ManifestIssue: Sendable, Equatable, CustomStringConvertible {
    /// 1-based line, or nil when the problem has no place (a missing key at the top).
    public var line: Int?
    /// 1-based column.
    public var column: Int?
    /// Dotted field path, such as `tasks.forEachRow.file` or `tasks[2].id`.
    public var field: String
    /// What is wrong.
    public var message: String
    /// How to fix it, when there is a clear fix.
    public var hint: String?
    /// The file the line is in, when it is not the manifest's own (a job
    /// type's file, whose fields the manifest took).
    public var file: String?

    /// Creates an issue.
    public init(line: Int?, column: Int?, field: String, message: String, hint: String? = nil, file: String? = nil) {
        self.line = line
        self.column = column
        self.field = field
        self.message = message
        self.hint = hint
        self.file = file
    }

    /// `LINE:COL: FIELD: MESSAGE (HINT)`, without the file name.
    public var description: String {
        var place = ""
        if let line { place = "\(line):\(column ?? 1): " }
        var text = "\(place)\(field.isEmpty ? "" : field + ": ")\(message)"
        if let hint { text += " (\(hint))" }
        return text
    }
}

/// A manifest that cannot be accepted: every issue found, and the file.
public struct ManifestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The manifest's file name or path, as the user knows it.
    public var file: String
    /// Every problem found, in file order.
    public var issues: [ManifestIssue]

    /// Creates the error.
    public init(file: String, issues: [ManifestIssue]) {
        self.file = file
        self.issues = issues
    }

    /// One line per issue, each `FILE:LINE:COL: FIELD: MESSAGE (HINT)`, the
    /// format compilers use, so editors can jump to the place.
    public var description: String {
        issues.map { issue in
            let where_ = issue.file ?? file
            return issue.line == nil ? "\(where_): \(issue)" : "\(where_):\(issue)"
        }.joined(separator: "\n")
    }
}
