import Yams

extension NodeReader {
    /// Reads the whole manifest; nil when a required part is missing.
    func manifest(_ root: Node) -> Manifest? {
        guard let top = mapping(root, "", allowed: ManifestKeys.top) else { return nil }
        if let v = top["version"], let version = int(v, "version", range: 0...Int(Int32.max)), version != 1 {
            fail(v, "version", "unsupported manifest version \(version)", hint: "this batchd reads version 1")
        }
        let name = string(top["name"], "name", required: true)
        if let name, let node = top["name"], !Template.isIdentifier(name, max: 64) {
            fail(node, "name", "\(Printable.quote(name)) is not a valid job name",
                 hint: "use 1-64 letters, digits, '-' and '_', starting with a letter or digit")
        }
        var backend: String?
        if let node = top["backend"], let b = string(node, "backend") {
            if catalog.isOpen && Template.isIdentifier(b, max: 64) || backends.contains(b) {
                backend = b
            } else if catalog.isOpen {
                fail(node, "backend", "\(Printable.quote(b)) is not a backend name", hint: "use 1-64 letters, digits, '-' and '_'")
            } else {
                let hint = Suggest.nearest(to: b, in: backends).map { "did you mean '\($0)'?" }
                    ?? "one of: \(backends.joined(separator: ", "))"
                fail(node, "backend", "unknown backend \(Printable.quote(b))", hint: hint)
            }
        }
        var baseDirectory: String?
        if let node = top["baseDirectory"], let dir = string(node, "baseDirectory", max: Bounds.pathBytes) {
            if dir.hasPrefix("/") {
                checkPath(dir, node, "baseDirectory")
                baseDirectory = dir
            } else {
                fail(node, "baseDirectory", "must be an absolute path", hint: "batchctl submit sets it for you")
            }
        }
        var type: String?
        if let node = top["type"], let t = string(node, "type") {
            if Template.isIdentifier(t, max: 64) { type = t } else {
                fail(node, "type", "\(Printable.quote(t)) is not a job type name", hint: "use 1-64 letters, digits, '-' and '_'")
            }
        }
        let parameters = parameters(top["parameters"])
        params = Array(parameters.keys)
        let source = tasks(top["tasks"])
        // Without a valid task source its placeholders are unknown: allow them all.
        var scope = source.map { TemplateScope(for: $0) }
            ?? TemplateScope(names: TemplateScope.common + ["file", "name", "stem", "i"], rowColumns: true)
        scope.params = Array(parameters.keys)
        let command = top["command"].flatMap { node -> String? in
            guard let c = string(node, "command", required: true, multiline: true, max: Bounds.commandBytes) else { return nil }
            template(c, node, "command", scope: scope, shell: true)
            return c
        }
        if command == nil, case .list(let entries)? = source, entries.contains(where: { $0.command == nil }) {
            fail(top["tasks"], "command", "some tasks have no command",
                 hint: "add a top-level 'command:' or a 'command:' to every task")
        } else if command == nil, top["command"] == nil, let source, !isList(source) {
            fail(nil, "command", "missing: a task factory needs a top-level command", hint: "add 'command: ...'")
        }
        let env = env(top["env"], "env", templates: scope)
        let secrets = secrets(top["secrets"], env: env)
        guard let name, let source else { return nil }

        var manifest = Manifest(name: name, tasks: source)
        manifest.backend = backend
        manifest.baseDirectory = baseDirectory
        manifest.command = command
        manifest.env = env
        manifest.secrets = secrets
        manifest.container = top["container"].flatMap(container)
        if manifest.container != nil { engineVariables(manifest, top) }
        manifest.type = type
        manifest.parameters = parameters
        manifest.retries = int(top["retries"], "retries", range: 0...Bounds.retries) ?? 0
        manifest.timeoutSeconds = duration(top["timeout"], "timeout")
        if let node = top["pool"] { manifest.pool = pool(node) }
        manifest.sharedInputs = inputs(top["inputs"])
        if let node = top["outputs"] { manifest.outputs = outputs(node) }
        if let node = top["cleanup"], let c = string(node, "cleanup") {
            if let policy = CleanupPolicy(rawValue: c) { manifest.cleanup = policy } else {
                let all = CleanupPolicy.allCases.map(\.rawValue)
                let hint = Suggest.nearest(to: c, in: all).map { "did you mean '\($0)'?" } ?? "one of: \(all.joined(separator: ", "))"
                fail(node, "cleanup", "unknown cleanup policy \(Printable.quote(c))", hint: hint)
            }
        }
        if let node = top["limits"], let map = mapping(node, "limits", allowed: ManifestKeys.limits) {
            manifest.limits.wallClockSeconds = duration(map["wallClock"], "limits.wallClock")
            manifest.limits.coreHours = number(map["coreHours"], "limits.coreHours", max: Bounds.coreHours)
        }
        checkExecSize(manifest, top)
        return manifest
    }

    /// `container:`: an image, the allowed engine options, where the task
    /// starts, and a configured registry's name.
    func container(_ node: Node) -> ContainerSpec? {
        guard let map = mapping(node, "container", allowed: ManifestKeys.container) else { return nil }
        guard let image = string(map["image"], "container.image", required: true, max: Bounds.imageBytes) else { return nil }
        var ok = true
        if let why = ImageReference.problem(image) {
            fail(map["image"], "container.image", "\(Printable.quote(String(image.prefix(80)))) \(why)",
                 hint: "name an image as the engine does, e.g. docker.io/library/python:3.12 or localhost/tools:1")
            ok = false
        }
        let options = stringList(map["options"], "container.options", max: Bounds.containerOptions, itemBytes: Bounds.containerOptionBytes)
        for (i, option) in options.enumerated() {
            if let why = ContainerOptions.problem(option) {
                fail(map["options"]?.sequence?[i] ?? map["options"], "container.options[\(i)]", why,
                     hint: "docs/manifest.md lists the allowed options")
                ok = false
            }
        }
        var workingDirectory = ContainerSpec.WorkingDirectory.task
        if let node = map["workingDirectory"], let w = string(node, "container.workingDirectory") {
            if let value = ContainerSpec.WorkingDirectory(rawValue: w) { workingDirectory = value } else {
                fail(node, "container.workingDirectory", "unknown working directory \(Printable.quote(w))",
                     hint: "task (the task's own directory, the default) or image (the image's)")
                ok = false
            }
        }
        var registry: String?
        if let node = map["registry"], let r = string(node, "container.registry") {
            if Template.isIdentifier(r, max: 64) { registry = r } else {
                fail(node, "container.registry", "\(Printable.quote(r)) is not a registry name",
                     hint: "the name of a registry in the daemon's containers.registries")
                ok = false
            }
        }
        guard ok else { return nil }
        return ContainerSpec(image: image, options: options.map(ContainerOptions.normalized), workingDirectory: workingDirectory, registry: registry)
    }

    /// A job with a container may not set a variable the engine reads.
    func engineVariables(_ m: Manifest, _ top: [String: Node]) {
        var seen: [(field: String, name: String, node: Node?)] = m.env.keys.map { ("env.\($0)", $0, top["env"]) }
            + m.secrets.keys.map { ("secrets.\($0)", $0, top["secrets"]) }
        if case .list(let entries) = m.tasks {
            for (i, e) in entries.enumerated() { seen += e.env.keys.map { ("tasks[\(i)].env.\($0)", $0, top["tasks"]) } }
        }
        for v in seen.sorted(by: { $0.field < $1.field }) where ContainerSpec.isEngineVariable(v.name) {
            fail(v.node, v.field, "'\(v.name)' would set up the container engine, not the task: a job with a container may not set it",
                 hint: "rename it, or set it in the command (export \(v.name)=...; ...)")
        }
    }

    /// `secrets:`: environment variable names to the files their values are
    /// read from (paths, taken as written: no placeholders). A name may not
    /// also be in `env`, nor reserved.
    func secrets(_ node: Node?, env: [String: String]) -> [String: String] {
        guard let node else { return [:] }
        guard let map = node.mapping else {
            fail(node, "secrets", "expected a mapping of variable names to files, found \(kind(node))",
                 hint: "secrets: {API_TOKEN: ~/.config/token}")
            return [:]
        }
        if map.count > Bounds.secrets {
            fail(node, "secrets", "\(map.count) secrets; at most \(Bounds.secrets) are allowed")
            return [:]
        }
        var out: [String: String] = [:]
        for (key, value) in map {
            guard let name = keyName(key, "secrets") else { continue }
            guard checkEnvName(name, key, "secrets") else { continue }
            let field = "secrets.\(name)"
            if env[name] != nil {
                fail(key, field, "'\(name)' is in both env and secrets", hint: "keep it in one of them")
                continue
            }
            guard let path = string(value, field, required: true, max: Bounds.pathBytes), !path.isEmpty else { continue }
            if path.split(separator: "/").contains(where: { $0.utf8.count > Bounds.nameBytes }) {
                fail(value, field, "a name in the path is longer than \(Bounds.nameBytes) bytes")
                continue
            }
            out[name] = path
        }
        return out
    }

    /// `parameters:`: names (identifiers) to scalar values, read as text.
    func parameters(_ node: Node?) -> [String: String] {
        guard let node else { return [:] }
        guard let map = node.mapping else {
            fail(node, "parameters", "expected a mapping of parameter names to values, found \(kind(node))")
            return [:]
        }
        if map.count > Bounds.parameters {
            fail(node, "parameters", "\(map.count) parameters; at most \(Bounds.parameters) are allowed")
            return [:]
        }
        var out: [String: String] = [:]
        for (key, value) in map {
            guard let name = keyName(key, "parameters") else { continue }
            guard Template.isIdentifier(name, max: 64), let first = name.unicodeScalars.first, !("0"..."9").contains(first) else {
                fail(key, "parameters", "\(Printable.quote(name)) is not a valid parameter name", hint: "use 1-64 letters, digits, '-' and '_', starting with a letter")
                continue
            }
            if let v = string(value, "parameters.\(name)", multiline: true, max: Bounds.parameterBytes) { out[name] = v }
        }
        return out
    }

    /// A task's command and environment must fit what Linux lets a process
    /// start with; the templates' own text is checked here, the filled-in
    /// values at expansion.
    func checkExecSize(_ m: Manifest, _ top: [String: Node]) {
        var total = (m.command?.utf8.count ?? 0) + m.env.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count + 2 }
        if case .list(let entries) = m.tasks {
            total += entries.map { ($0.command?.utf8.count ?? 0) + $0.env.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count + 2 } }.max() ?? 0
        }
        if total > Bounds.execBytes {
            fail(top["env"] ?? top["command"], "env", "a task's command and environment come to \(total) bytes; at most \(Bounds.execBytes) (1 MiB) fit",
                 hint: "pass large data in an input file instead")
        }
    }

    private func isList(_ source: TaskSource) -> Bool {
        if case .list = source { return true }
        return false
    }

    func pool(_ node: Node) -> PoolSpec {
        var spec = PoolSpec()
        guard let map = mapping(node, "pool", allowed: catalog.isOpen ? nil : catalog.poolKeys) else { return spec }
        if let idNode = map["id"], let id = string(idNode, "pool.id") {
            if Template.isIdentifier(id, max: 64) { spec.id = id } else {
                fail(idNode, "pool.id", "\(Printable.quote(id)) is not a valid pool id", hint: "use 1-64 letters, digits, '-' and '_'")
            }
        }
        spec.slotsPerNode = int(map["slotsPerNode"], "pool.slotsPerNode", range: 1...Bounds.slotsPerNode)
        let declared = catalog.poolOptions
        for (key, value) in map where !ManifestKeys.pool.contains(key) {
            let field = "pool.\(key)"
            guard let option = declared[key] else {
                // Not declared here (batchctl before any daemon published its
                // backends): a bounded scalar, checked by the daemon's intake.
                if let text = string(value, field, multiline: true, max: Bounds.keyBytes * 32) { spec.options[key] = .text(text) }
                continue
            }
            if let v = poolValue(value, field, option) { spec.options[key] = v }
        }
        return spec
    }

    /// A pool option's value, checked against its declaration.
    func poolValue(_ node: Node, _ field: String, _ option: PoolOption) -> PoolValue? {
        func bad(_ text: String) -> PoolValue? {
            fail(node, field, "\(Printable.quote(text)) is not \(option.what)", hint: option.hint)
            return nil
        }
        switch option.kind {
        case .integer(let min, let max):
            return int(node, field, range: min...max).map(PoolValue.int)
        case .name(let max, let extra):
            guard let text = string(node, field) else { return nil }
            return Self.isName(text, max: max, extra: extra) ? .text(text) : bad(text)
        case .text(let maxBytes, let multiline, let separator, let parts):
            guard let text = string(node, field, multiline: multiline, max: maxBytes) else { return nil }
            if let separator, let parts, !parts.contains(text.components(separatedBy: separator).count) { return bad(text) }
            return .text(text)
        case .duration:
            return duration(node, field).map(PoolValue.number)
        case .memory(let maxMiB):
            guard let text = string(node, field) else { return nil }
            if let mib = Self.mebibytes(text), (1...maxMiB).contains(mib) { return .int(mib) }
            return bad(text)
        }
    }

    func inputs(_ node: Node?) -> [String] {
        guard let node else { return [] }
        let list: [String]
        var listNode: Node? = node
        if node.sequence != nil || node.scalar != nil {
            list = stringList(node, "inputs", max: Bounds.inputPatterns, itemBytes: Bounds.patternBytes)
        } else {
            guard let map = mapping(node, "inputs", allowed: ManifestKeys.inputs) else { return [] }
            list = stringList(map["shared"], "inputs.shared", max: Bounds.inputPatterns, itemBytes: Bounds.patternBytes)
            listNode = map["shared"]
        }
        for (i, path) in list.enumerated() { checkPattern(path, listNode?.sequence?[i] ?? listNode, "inputs.shared[\(i)]") }
        return list
    }

    func outputs(_ node: Node) -> OutputSpec {
        var spec = OutputSpec()
        if node.sequence != nil || node.scalar != nil {
            spec.patterns = stringList(node, "outputs", max: Bounds.outputPatterns, itemBytes: Bounds.patternBytes)
        } else if let map = mapping(node, "outputs", allowed: ManifestKeys.outputs) {
            spec.patterns = stringList(map["patterns"], "outputs.patterns", max: Bounds.outputPatterns, itemBytes: Bounds.patternBytes)
            if let d = string(map["destination"], "outputs.destination", required: map["destination"] != nil, max: Bounds.pathBytes) {
                checkPath(d, map["destination"], "outputs.destination")
                spec.destination = d
            }
            if let m = map["merge"] { spec.merge = merge(m, patterns: spec.patterns) }
        }
        for pattern in spec.patterns {
            if pattern.hasPrefix("/") || pattern.split(separator: "/").contains("..") {
                fail(node, "outputs.patterns", "\(Printable.quote(pattern)) reaches outside the task's directory",
                     hint: "patterns are relative to the task's working directory; remove '/' at the start and '..'")
            } else {
                checkPattern(pattern, node, "outputs.patterns")
            }
        }
        return spec
    }

    /// `outputs.merge`: `from` a relative glob, `into` a relative path no
    /// output pattern (nor `from`) could match, `format` named or implied
    /// by `into`'s extension.
    func merge(_ node: Node, patterns: [String]) -> MergeSpec? {
        guard let map = mapping(node, "outputs.merge", allowed: ManifestKeys.merge) else { return nil }
        let from = string(map["from"], "outputs.merge.from", required: true, max: Bounds.patternBytes)
        let into = string(map["into"], "outputs.merge.into", required: true, max: Bounds.pathBytes)
        var ok = from != nil && into != nil
        func relative(_ text: String, _ field: String, _ what: String) -> Bool {
            let parts = text.split(separator: "/", omittingEmptySubsequences: false)
            guard !text.hasPrefix("/"), !parts.contains(".."), !parts.contains("."), !parts.contains("") else {
                fail(map[field.split(separator: ".").last.map(String.init) ?? ""], field, "\(Printable.quote(text)) is not a plain path inside the destination",
                     hint: "\(what) is relative to outputs.destination: no '/' at the start or end, no '.', '..' or '//'")
                return false
            }
            return true
        }
        if let from {
            ok = relative(from, "outputs.merge.from", "the pattern") && ok
            checkPattern(from, map["from"], "outputs.merge.from")
        }
        if let into {
            ok = relative(into, "outputs.merge.into", "the merged file") && ok
            checkPath(into, map["into"], "outputs.merge.into")
            let parts = into.split(separator: "/").map(String.init)
            if let clash = (patterns + [from].compactMap { $0 }).first(where: { Glob($0).matches(parts) }) {
                fail(map["into"], "outputs.merge.into", "\(Printable.quote(into)) matches \(Printable.quote(clash)), so a task's file could take its place",
                     hint: "name the merged file so that no output pattern and not outputs.merge.from match it")
                ok = false
            }
        }
        var format = into.flatMap { MergeSpec.format(forName: $0) }
        if let f = map["format"], let text = string(f, "outputs.merge.format") {
            if let named = MergeSpec.Format(rawValue: text) { format = named } else {
                let all = MergeSpec.Format.allCases.map(\.rawValue)
                fail(f, "outputs.merge.format", "unknown format \(Printable.quote(text))",
                     hint: Suggest.nearest(to: text, in: all).map { "did you mean '\($0)'?" } ?? "one of: \(all.joined(separator: ", "))")
                ok = false
            }
        } else if format == nil, into != nil, map["format"] == nil {
            fail(node, "outputs.merge.format", "missing, and \(Printable.quote(into ?? "")) does not say (.csv, .jsonl)", hint: "add 'format: csv', 'jsonl' or 'concat'")
            ok = false
        }
        if patterns.isEmpty {
            fail(node, "outputs.merge", "nothing to merge: outputs.patterns is empty", hint: "collect the files to merge with outputs.patterns")
            ok = false
        }
        guard ok, let from, let into, let format else { return nil }
        return MergeSpec(from: from, into: into, format: format)
    }

    func tasks(_ node: Node?) -> TaskSource? {
        guard let node else {
            fail(nil, "tasks", "missing", hint: "add 'tasks:' with a list or one of forEachFile, forEachInteger, forEachRow")
            return nil
        }
        if let seq = node.sequence {
            if seq.isEmpty { fail(node, "tasks", "the task list is empty"); return nil }
            if seq.count > Bounds.tasks { fail(node, "tasks", "\(seq.count) tasks; at most \(Bounds.tasks) are allowed"); return nil }
            var entries: [TaskEntry] = []
            var seen: [String: Int] = [:]
            let scope = TemplateScope(names: TemplateScope.common, rowColumns: false, params: params)
            for (i, item) in seq.enumerated() {
                let field = "tasks[\(i)]"
                guard let map = mapping(item, field, allowed: ManifestKeys.taskEntry) else { continue }
                var entry = TaskEntry()
                if let idNode = map["id"], let id = string(idNode, "\(field).id", required: true) {
                    if !Template.isIdentifier(id, max: 64) {
                        fail(idNode, "\(field).id", "\(Printable.quote(id)) is not a valid task id", hint: "use 1-64 letters, digits, '-' and '_'")
                    } else if let first = seen[id] {
                        fail(idNode, "\(field).id", "task id '\(id)' is already used by tasks[\(first)]", hint: "task ids must be unique")
                    } else {
                        seen[id] = i
                    }
                    entry.id = id
                }
                if let cNode = map["command"], let c = string(cNode, "\(field).command", required: true, multiline: true, max: Bounds.commandBytes) {
                    template(c, cNode, "\(field).command", scope: scope, shell: true)
                    entry.command = c
                }
                entry.env = env(map["env"], "\(field).env", templates: scope)
                entry.inputs = stringList(map["inputs"], "\(field).inputs", max: Bounds.inputPatterns, itemBytes: Bounds.patternBytes)
                for (k, p) in entry.inputs.enumerated() { checkPattern(p, map["inputs"], "\(field).inputs[\(k)]") }
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
            guard let pattern = string(map["forEachFile"], "tasks.forEachFile", required: true, max: Bounds.patternBytes) else { return nil }
            checkPattern(pattern, map["forEachFile"], "tasks.forEachFile")
            source = .forEachFile(pattern: pattern, id: id)
        case "forEachInteger":
            guard let range = mapping(map["forEachInteger"]!, "tasks.forEachInteger", allowed: ManifestKeys.integerRange) else { return nil }
            let bound = -Bounds.integer...Bounds.integer
            let from = int(range["from"], "tasks.forEachInteger.from", range: bound)
            let to = int(range["to"], "tasks.forEachInteger.to", range: bound)
            let step = int(range["step"], "tasks.forEachInteger.step", range: 1...Bounds.integer)
            if range["from"] == nil || range["to"] == nil {
                fail(map["forEachInteger"], "tasks.forEachInteger", "needs both 'from' and 'to'", hint: "e.g. {from: 1, to: 100}")
            }
            guard let from, let to, range["step"] == nil || step != nil else { return nil }
            let by = step ?? 1
            if to < from { fail(map["forEachInteger"], "tasks.forEachInteger", "'to' (\(to)) is less than 'from' (\(from))"); return nil }
            // |to - from| < 2^54 and step ≥ 1: no overflow anywhere here.
            let count = (to - from) / by + 1
            if count > Bounds.tasks {
                fail(map["forEachInteger"], "tasks.forEachInteger", "makes \(count) tasks; at most \(Bounds.tasks) are allowed",
                     hint: "narrow the range or raise 'step'")
                return nil
            }
            source = .forEachInteger(from: from, to: to, step: by, id: id)
        default:
            let rowNode = map["forEachRow"]!
            var file: String?
            var format: RowFormat?
            if rowNode.scalar != nil {
                file = string(rowNode, "tasks.forEachRow", required: true, max: Bounds.pathBytes)
            } else if let row = mapping(rowNode, "tasks.forEachRow", allowed: ManifestKeys.rows) {
                file = string(row["file"], "tasks.forEachRow.file", required: true, max: Bounds.pathBytes)
                if let fNode = row["format"], let f = string(fNode, "tasks.forEachRow.format") {
                    format = RowFormat(rawValue: f)
                    if format == nil { fail(fNode, "tasks.forEachRow.format", "unknown format \(Printable.quote(f))", hint: "csv or jsonl") }
                }
            }
            guard let file else { return nil }
            checkPath(file, rowNode, "tasks.forEachRow.file")
            let lower = file.lowercased()
            let inferred: RowFormat? = lower.hasSuffix(".csv") ? .csv
                : (lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson")) ? .jsonl : nil
            guard let chosen = format ?? inferred else {
                fail(rowNode, "tasks.forEachRow.format", "cannot tell the format of \(Printable.quote(file))", hint: "add 'format: csv' or 'format: jsonl'")
                return nil
            }
            source = .forEachRow(file: file, format: chosen, id: id)
        }
        if let id, let idNode = map["id"] {
            var scope = TemplateScope(for: source)
            scope.params = params
            template(id, idNode, "tasks.id", scope: scope)
        }
        return source
    }

    /// A name: an ASCII letter or digit, then letters, digits and the
    /// characters of `extra`, at most `max` in all.
    static func isName(_ s: String, max: Int, extra: String) -> Bool {
        guard let first = s.unicodeScalars.first, s.unicodeScalars.count <= max else { return false }
        func ok(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) }
        return ok(first) && s.unicodeScalars.allSatisfy { ok($0) || extra.unicodeScalars.contains($0) }
    }

    /// `512M`, `4G`, `1T` in MiB; nil for anything else (no fractions, at
    /// most 9 digits, so nothing overflows).
    static func mebibytes(_ s: String) -> Int? {
        guard let unit = s.last, let factor = ["M": 1, "G": 1024, "T": 1024 * 1024][String(unit).uppercased()] else { return nil }
        let digits = s.dropLast()
        guard (1...9).contains(digits.count), digits.allSatisfy({ ("0"..."9").contains($0) }), let n = Int(digits) else { return nil }
        return n * factor
    }
}
