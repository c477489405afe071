import Yams

extension NodeReader {
    /// Reads the whole manifest; nil when a required part is missing.
    func manifest(_ root: Node) -> Manifest? {
        guard let top = mapping(root, "", allowed: ManifestKeys.top) else { return nil }
        if let v = top["version"], let version = int(v, "version"), version != 1 {
            fail(v, "version", "unsupported manifest version \(version)", hint: "this batchd reads version 1")
        }
        let name = string(top["name"], "name", required: true)
        if let name, let node = top["name"], !Template.isIdentifier(name, max: 64) {
            fail(node, "name", "'\(name)' is not a valid job name",
                 hint: "use 1-64 letters, digits, '-' and '_', starting with a letter or digit")
        }
        var backend: String?
        if let node = top["backend"], let b = string(node, "backend") {
            if ManifestKeys.backends.contains(b) {
                backend = b
            } else {
                let hint = Suggest.nearest(to: b, in: ManifestKeys.backends).map { "did you mean '\($0)'?" }
                    ?? "one of: \(ManifestKeys.backends.joined(separator: ", "))"
                fail(node, "backend", "unknown backend '\(b)'", hint: hint)
            }
        }
        var baseDirectory: String?
        if let node = top["baseDirectory"], let dir = string(node, "baseDirectory") {
            if dir.hasPrefix("/") { baseDirectory = dir } else {
                fail(node, "baseDirectory", "must be an absolute path", hint: "batchctl submit sets it for you")
            }
        }
        let source = tasks(top["tasks"])
        let scope = source.map { TemplateScope(for: $0) } ?? TemplateScope(names: [], rowColumns: true)
        let command = top["command"].flatMap { node -> String? in
            guard let c = string(node, "command", required: true) else { return nil }
            template(c, node, "command", scope: scope)
            return c
        }
        if command == nil, case .list(let entries)? = source, entries.contains(where: { $0.command == nil }) {
            fail(top["tasks"], "command", "some tasks have no command",
                 hint: "add a top-level 'command:' or a 'command:' to every task")
        } else if command == nil, let source, !isList(source) {
            fail(nil, "command", "missing: a task factory needs a top-level command", hint: "add 'command: ...'")
        }
        guard let name, let source else { return nil }

        var manifest = Manifest(name: name, tasks: source)
        manifest.backend = backend
        manifest.baseDirectory = baseDirectory
        manifest.command = command
        manifest.env = env(top["env"], "env", templates: scope)
        manifest.retries = int(top["retries"], "retries", min: 0) ?? 0
        if manifest.retries > 100 { fail(top["retries"], "retries", "at most 100") }
        manifest.timeoutSeconds = duration(top["timeout"], "timeout")
        if let node = top["pool"] { manifest.pool = pool(node) }
        manifest.sharedInputs = inputs(top["inputs"])
        if let node = top["outputs"] { manifest.outputs = outputs(node) }
        if let node = top["cleanup"], let c = string(node, "cleanup") {
            if let policy = CleanupPolicy(rawValue: c) { manifest.cleanup = policy } else {
                let all = CleanupPolicy.allCases.map(\.rawValue)
                let hint = Suggest.nearest(to: c, in: all).map { "did you mean '\($0)'?" } ?? "one of: \(all.joined(separator: ", "))"
                fail(node, "cleanup", "unknown cleanup policy '\(c)'", hint: hint)
            }
        }
        if let node = top["limits"], let map = mapping(node, "limits", allowed: ManifestKeys.limits) {
            manifest.limits.wallClockSeconds = duration(map["wallClock"], "limits.wallClock")
            manifest.limits.coreHours = number(map["coreHours"], "limits.coreHours")
        }
        return manifest
    }

    private func isList(_ source: TaskSource) -> Bool {
        if case .list = source { return true }
        return false
    }

    func pool(_ node: Node) -> PoolSpec {
        var spec = PoolSpec()
        guard let map = mapping(node, "pool", allowed: ManifestKeys.pool) else { return spec }
        if let idNode = map["id"], let id = string(idNode, "pool.id") {
            if Template.isIdentifier(id, max: 64) { spec.id = id } else {
                fail(idNode, "pool.id", "'\(id)' is not a valid pool id", hint: "use 1-64 letters, digits, '-' and '_'")
            }
        }
        spec.vmSize = string(map["vmSize"], "pool.vmSize")
        spec.dedicatedNodes = int(map["dedicatedNodes"], "pool.dedicatedNodes", min: 0)
        spec.spotNodes = int(map["spotNodes"], "pool.spotNodes", min: 0)
        spec.slotsPerNode = int(map["slotsPerNode"], "pool.slotsPerNode", min: 1)
        spec.image = string(map["image"], "pool.image")
        if let image = spec.image, image.split(separator: ":").count < 3 {
            fail(map["image"], "pool.image", "expected publisher:offer:sku[:version]",
                 hint: "e.g. canonical:0001-com-ubuntu-server-jammy:22_04-lts")
        }
        spec.nodeAgentSku = string(map["nodeAgentSku"], "pool.nodeAgentSku")
        spec.startTask = string(map["startTask"], "pool.startTask")
        spec.idleTimeoutSeconds = duration(map["idleTimeout"], "pool.idleTimeout")
        return spec
    }

    func inputs(_ node: Node?) -> [String] {
        guard let node else { return [] }
        if node.sequence != nil || node.scalar != nil { return stringList(node, "inputs") }
        guard let map = mapping(node, "inputs", allowed: ManifestKeys.inputs) else { return [] }
        let list = stringList(map["shared"], "inputs.shared")
        for (i, path) in list.enumerated() { checkPath(path, map["shared"], "inputs.shared[\(i)]") }
        return list
    }

    func outputs(_ node: Node) -> OutputSpec {
        var spec = OutputSpec()
        if node.sequence != nil || node.scalar != nil {
            spec.patterns = stringList(node, "outputs")
        } else if let map = mapping(node, "outputs", allowed: ManifestKeys.outputs) {
            spec.patterns = stringList(map["patterns"], "outputs.patterns")
            if let d = string(map["destination"], "outputs.destination", required: map["destination"] != nil) {
                spec.destination = d
            }
        }
        for pattern in spec.patterns where pattern.hasPrefix("/") || pattern.split(separator: "/").contains("..") {
            fail(node, "outputs.patterns", "'\(pattern)' reaches outside the task's directory",
                 hint: "patterns are relative to the task's working directory; remove '/' at the start and '..'")
        }
        return spec
    }

    func tasks(_ node: Node?) -> TaskSource? {
        guard let node else {
            fail(nil, "tasks", "missing", hint: "add 'tasks:' with a list or one of forEachFile, forEachInteger, forEachRow")
            return nil
        }
        if let seq = node.sequence {
            if seq.isEmpty { fail(node, "tasks", "the task list is empty"); return nil }
            var entries: [TaskEntry] = []
            var seen: [String: Int] = [:]
            for (i, item) in seq.enumerated() {
                let field = "tasks[\(i)]"
                guard let map = mapping(item, field, allowed: ManifestKeys.taskEntry) else { continue }
                var entry = TaskEntry()
                if let idNode = map["id"], let id = string(idNode, "\(field).id", required: true) {
                    if !Template.isIdentifier(id, max: 64) {
                        fail(idNode, "\(field).id", "'\(id)' is not a valid task id", hint: "use 1-64 letters, digits, '-' and '_'")
                    } else if let first = seen[id] {
                        fail(idNode, "\(field).id", "task id '\(id)' is already used by tasks[\(first)]", hint: "task ids must be unique")
                    } else {
                        seen[id] = i
                    }
                    entry.id = id
                }
                let scope = TemplateScope(names: TemplateScope.common, rowColumns: false)
                if let cNode = map["command"], let c = string(cNode, "\(field).command", required: true) {
                    template(c, cNode, "\(field).command", scope: scope)
                    entry.command = c
                }
                entry.env = env(map["env"], "\(field).env", templates: scope)
                entry.inputs = stringList(map["inputs"], "\(field).inputs")
                entries.append(entry)
            }
            return .list(entries)
        }
        guard let map = mapping(node, "tasks", allowed: ManifestKeys.taskFactory) else { return nil }
        let given = ManifestKeys.factories.filter { map[$0] != nil }
        guard given.count == 1 else {
            fail(node, "tasks", given.isEmpty ? "no task factory given" : "more than one task factory: \(given.joined(separator: ", "))",
                 hint: "give a list of tasks, or exactly one of forEachFile, forEachInteger, forEachRow")
            return nil
        }
        let source: TaskSource
        var id: String?
        if let idNode = map["id"] { id = string(idNode, "tasks.id", required: true) }
        switch given[0] {
        case "forEachFile":
            guard let pattern = string(map["forEachFile"], "tasks.forEachFile", required: true) else { return nil }
            source = .forEachFile(pattern: pattern, id: id)
        case "forEachInteger":
            guard let range = mapping(map["forEachInteger"]!, "tasks.forEachInteger", allowed: ManifestKeys.integerRange) else { return nil }
            guard let from = int(range["from"], "tasks.forEachInteger.from"), let to = int(range["to"], "tasks.forEachInteger.to") else {
                if range["from"] == nil || range["to"] == nil {
                    fail(map["forEachInteger"], "tasks.forEachInteger", "needs both 'from' and 'to'", hint: "e.g. {from: 1, to: 100}")
                }
                return nil
            }
            let step = int(range["step"], "tasks.forEachInteger.step", min: 1) ?? 1
            if to < from { fail(map["forEachInteger"], "tasks.forEachInteger", "'to' (\(to)) is less than 'from' (\(from))"); return nil }
            if (to - from) / step >= 1_000_000 { fail(map["forEachInteger"], "tasks.forEachInteger", "more than 1,000,000 tasks"); return nil }
            source = .forEachInteger(from: from, to: to, step: step, id: id)
        default:
            let rowNode = map["forEachRow"]!
            var file: String?
            var format: RowFormat?
            if rowNode.scalar != nil {
                file = string(rowNode, "tasks.forEachRow", required: true)
            } else if let row = mapping(rowNode, "tasks.forEachRow", allowed: ManifestKeys.rows) {
                file = string(row["file"], "tasks.forEachRow.file", required: true)
                if let fNode = row["format"], let f = string(fNode, "tasks.forEachRow.format") {
                    format = RowFormat(rawValue: f)
                    if format == nil { fail(fNode, "tasks.forEachRow.format", "unknown format '\(f)'", hint: "csv or jsonl") }
                }
            }
            guard let file else { return nil }
            let lower = file.lowercased()
            let inferred: RowFormat? = lower.hasSuffix(".csv") ? .csv
                : (lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson")) ? .jsonl : nil
            guard let chosen = format ?? inferred else {
                fail(rowNode, "tasks.forEachRow.format", "cannot tell the format of '\(file)'", hint: "add 'format: csv' or 'format: jsonl'")
                return nil
            }
            source = .forEachRow(file: file, format: chosen, id: id)
        }
        if let id, let idNode = map["id"] { template(id, idNode, "tasks.id", scope: TemplateScope(for: source)) }
        return source
    }
}
