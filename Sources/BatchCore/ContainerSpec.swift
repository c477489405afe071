/// `container:`: the image every task of a job runs in (docs/containers.md),
/// the same on every backend: each backend runs it in its own way.
public struct ContainerSpec: Sendable, Equatable, Codable {
    /// The image reference: `[registry/]path[:tag][@digest]`.
    public var image: String
    /// Extra engine options, each one of the allow-list (`ContainerOptions`).
    public var options: [String]
    /// Where the task starts inside the container.
    public var workingDirectory: WorkingDirectory
    /// A registry the operator configured (`containers.registries`), whose
    /// credentials pull the image; nil pulls without credentials.
    public var registry: String?

    /// Where a containerized task starts.
    public enum WorkingDirectory: String, Sendable, Equatable, Codable, CaseIterable {
        /// The task's own directory (bind-mounted into the container): the default.
        case task
        /// The image's own working directory.
        case image
    }

    /// Whether `name` is a variable the engine itself reads (its search
    /// path, its configuration, its registries, its proxies): a task's
    /// variables reach the engine's environment on their way into the
    /// container, so a job with a container may not set these.
    public static func isEngineVariable(_ name: String) -> Bool {
        let upper = name.uppercased()
        let exact: Set<String> = ["PATH", "HOME", "TMPDIR", "SHELL", "USER", "LOGNAME", "TZ", "NOTIFY_SOCKET", "GODEBUG", "GOMAXPROCS", "GOTRACEBACK",
                                  "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "FTP_PROXY"]
        let prefixes = ["LD_", "XDG_", "CONTAINERS_", "CONTAINER_", "DOCKER_", "REGISTRY_", "STORAGE_", "BUILDAH_", "PODMAN_", "SSL_", "DBUS_",
                        "SYSTEMD_", "RUNC_", "CRUN_", "CONMON_", "OCI_", "APPTAINER", "SINGULARITY"]
        return exact.contains(upper) || prefixes.contains { upper.hasPrefix($0) }
    }

    /// A container spec.
    public init(image: String, options: [String] = [], workingDirectory: WorkingDirectory = .task, registry: String? = nil) {
        self.image = image
        self.options = options
        self.workingDirectory = workingDirectory
        self.registry = registry
    }
}

/// Image references: what a manifest may name.
public enum ImageReference {
    /// Why `text` is not an image reference batchd will pass on, or nil.
    /// The grammar is Docker's distribution reference
    /// (`[host[:port]/]component(/component)*[:tag][@algorithm:hex]`), so
    /// the text never holds a space, a shell metacharacter or a leading `-`.
    public static func problem(_ text: String) -> String? {
        if text.isEmpty { return "is empty" }
        if text.utf8.count > Bounds.imageBytes { return "has \(text.utf8.count) bytes; an image reference has at most \(Bounds.imageBytes)" }
        if let bad = text.unicodeScalars.first(where: { !isReferenceScalar($0) }) {
            return "contains \(Printable.quote(String(bad))), which no image reference holds"
        }
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") {
            let digest = rest[rest.index(after: at)...]
            let parts = digest.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, parts[0].allSatisfy({ $0.isLetter || $0.isNumber || "+.-_".contains($0) }),
                  parts[1].count >= 32, parts[1].allSatisfy(\.isHexDigit) else {
                return "has a digest that is not ALGORITHM:HEX (e.g. @sha256: and 64 hex digits)"
            }
            rest = rest[..<at]
        }
        // A tag is after the last ':' that follows the last '/'.
        let lastSlash = rest.lastIndex(of: "/")
        if let colon = rest.lastIndex(of: ":"), lastSlash.map({ colon > $0 }) ?? true {
            let tag = rest[rest.index(after: colon)...]
            guard (1...128).contains(tag.count), let first = tag.first, first.isLetter || first.isNumber || first == "_",
                  tag.allSatisfy({ $0.isLetter || $0.isNumber || "_.-".contains($0) }) else {
                return "has a tag that is not 1-128 letters, digits, '_', '.' and '-' (not starting with '.' or '-')"
            }
            rest = rest[..<colon]
        }
        var components = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard let firstPart = components.first, !firstPart.isEmpty else { return "has no name" }
        // The first component is a registry host when it looks like one.
        if components.count > 1, firstPart.contains(".") || firstPart.contains(":") || firstPart == "localhost" {
            guard isRegistryHost(String(firstPart)) else {
                return "has a registry host \(Printable.quote(String(firstPart))) that is not HOST or HOST:PORT"
            }
            components.removeFirst()
        }
        for c in components where !isPathComponent(c) {
            return "has a name part \(Printable.quote(String(c))) that is not lower-case letters and digits joined by '.', '_', '__' or '-'"
        }
        return nil
    }

    /// The registry host an image names (`registry.example.com` of
    /// `registry.example.com/tools:1`), nil when it names none (a short
    /// name, which the engine resolves on its own).
    public static func host(of image: String) -> String? {
        let parts = image.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count > 1, let first = parts.first, first.contains(".") || first.contains(":") || first == "localhost" else { return nil }
        return String(first)
    }

    /// Whether `text` is a registry's `HOST` or `HOST:PORT`.
    public static func isRegistryHost(_ text: String) -> Bool {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        return (1...2).contains(parts.count) && isHost(parts[0])
            && (parts.count == 1 || (1...5).contains(parts[1].count) && parts[1].allSatisfy { $0.isASCII && $0.isNumber })
    }

    static func isReferenceScalar(_ s: Unicode.Scalar) -> Bool {
        s.isASCII && (("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s) || "._-/:@+".unicodeScalars.contains(s))
    }

    static func isHost(_ h: Substring) -> Bool {
        !h.isEmpty && h.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            guard let f = label.first, let l = label.last, f.isLetter || f.isNumber, l.isLetter || l.isNumber else { return false }
            return label.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" }
        }
    }

    /// `alnum+ (separator alnum+)*`, a separator being '.', '_', '__' or a run of '-'.
    static func isPathComponent(_ c: Substring) -> Bool {
        var rest = c
        while true {
            let run = rest.prefix(while: isLowerAlnum)
            guard !run.isEmpty else { return false }
            rest = rest.dropFirst(run.count)
            if rest.isEmpty { return true }
            let separator = rest.prefix(while: { !isLowerAlnum($0) })
            guard separator == "." || separator == "_" || separator == "__" || separator.allSatisfy({ $0 == "-" }) else { return false }
            rest = rest.dropFirst(separator.count)
        }
    }

    static func isLowerAlnum(_ c: Character) -> Bool { c.isASCII && (c.isNumber || ("a"..."z").contains(c)) }
}

/// The engine options a manifest may add (`container.options`): each
/// limits what the task may use, none widens what it may reach. Mounts,
/// devices, capabilities, namespaces of the host and the user are batchd's
/// to set, never a manifest's.
public enum ContainerOptions {
    /// The allowed options (as `--NAME=VALUE`, or `--NAME VALUE` in one
    /// entry for a flag) and what their value must be.
    public static let allowed: [String: Value] = [
        "--memory": .size, "--memory-reservation": .size, "--memory-swap": .sizeOrUnlimited, "--shm-size": .size,
        "--cpus": .decimal, "--cpu-shares": .count, "--pids-limit": .count,
        "--network": .oneOf(["none", "bridge"]), "--read-only": .flag, "--hostname": .hostname,
    ]

    /// What an option's value may be.
    public enum Value: Sendable, Equatable {
        case size, sizeOrUnlimited, decimal, count, flag, hostname
        case oneOf([String])
    }

    /// Options refused with their own reason (any other unknown one is
    /// refused with the allow-list).
    static let refused: [String: String] = [
        "--privileged": "would give the task every capability and device of the host",
        "--volume": "mounts are batchd's to make: the task's directory is mounted for it",
        "-v": "mounts are batchd's to make: the task's directory is mounted for it",
        "--mount": "mounts are batchd's to make: the task's directory is mounted for it",
        "--tmpfs": "mounts are batchd's to make: the task's directory is mounted for it",
        "--volumes-from": "mounts are batchd's to make: the task's directory is mounted for it",
        "--device": "would give the task a device of the host",
        "--cap-add": "would give the task a capability",
        "--security-opt": "would loosen the container's confinement",
        "--pid": "would share a namespace of the host or another container",
        "--ipc": "would share a namespace of the host or another container",
        "--uts": "would share a namespace of the host or another container",
        "--userns": "would share a namespace of the host or another container",
        "--cgroupns": "would share a namespace of the host or another container",
        "--user": "the task runs as its submitter: batchd sets the user",
        "-u": "the task runs as its submitter: batchd sets the user",
        "--group-add": "the task runs as its submitter: batchd sets the groups",
        "--env": "give variables in env: (or secrets:)",
        "-e": "give variables in env: (or secrets:)",
        "--env-file": "give variables in env: (or secrets:)",
        "--workdir": "use container.workingDirectory",
        "-w": "use container.workingDirectory",
        "--name": "batchd names the container",
        "--rm": "batchd removes the container",
        "--entrypoint": "the task's command runs through the image's /bin/sh",
    ]

    /// Why `option` is refused, or nil when it is allowed.
    public static func problem(_ option: String) -> String? {
        let name: Substring, value: Substring?
        if let eq = option.firstIndex(of: "=") {
            (name, value) = (option[..<eq], option[option.index(after: eq)...])
        } else if let space = option.firstIndex(of: " ") {
            (name, value) = (option[..<space], option[option.index(after: space)...])
        } else {
            (name, value) = (Substring(option), nil)
        }
        let n = String(name)
        if n == "--network" || n == "--net", let value, value == "host" || value.hasPrefix("container:") || value.hasPrefix("ns:") {
            return "'\(n)=\(value)' would share the host's network or another container's; allowed: --network=none or --network=bridge"
        }
        if let why = refused[n] { return "'\(n)' is not allowed: it \(why)" }
        guard let kind = allowed[n == "--net" ? "--network" : n] else {
            return "'\(Printable.escape(String(n.prefix(64))))' is not an allowed option; allowed: \(allowed.keys.sorted().joined(separator: ", "))"
        }
        switch (kind, value) {
        case (.flag, nil): return nil
        case (.flag, _?): return "'\(n)' takes no value"
        case (_, nil): return "'\(n)' needs a value, as \(n)=VALUE"
        case (_, let v?):
            if valueFits(kind, v) { return nil }
            return "'\(n)' has the value \(Printable.quote(String(v.prefix(64)))); \(describe(kind))"
        }
    }

    static func valueFits(_ kind: Value, _ v: Substring) -> Bool {
        switch kind {
        case .size: return isSize(v)
        case .sizeOrUnlimited: return v == "-1" || isSize(v)
        case .decimal:
            let parts = v.split(separator: ".", omittingEmptySubsequences: false)
            return (1...2).contains(parts.count) && parts.allSatisfy { (1...6).contains($0.count) && $0.allSatisfy(\.isNumber) }
        case .count: return (1...9).contains(v.count) && v.allSatisfy(\.isNumber)
        case .flag: return false
        case .hostname: return v.count <= 63 && ImageReference.isHost(v) && !v.contains(".")
        case .oneOf(let values): return values.contains(String(v))
        }
    }

    static func isSize(_ v: Substring) -> Bool {
        let digits = v.prefix(while: \.isNumber)
        let unit = v.dropFirst(digits.count).lowercased()
        return (1...12).contains(digits.count) && ["", "b", "k", "m", "g"].contains(unit)
    }

    static func describe(_ kind: Value) -> String {
        switch kind {
        case .size: return "expected a size such as 512m or 2g"
        case .sizeOrUnlimited: return "expected a size such as 4g, or -1"
        case .decimal: return "expected a number such as 1 or 0.5"
        case .count: return "expected a whole number"
        case .flag: return "it takes no value"
        case .hostname: return "expected a host name of letters, digits and '-'"
        case .oneOf(let values): return "expected one of: \(values.joined(separator: ", "))"
        }
    }

    /// The option as the engine takes it: `--NAME=VALUE` (one argument, so
    /// no value is ever read as another option).
    public static func normalized(_ option: String) -> String {
        guard !option.contains("="), let space = option.firstIndex(of: " ") else { return option }
        return "\(option[..<space])=\(option[option.index(after: space)...])"
    }
}

extension ManifestIssue {
    /// A backend that does not run `container:` yet refuses it at intake,
    /// rather than run the tasks outside the image.
    public static func containerNotYet(_ backend: String) -> ManifestIssue {
        ManifestIssue(line: nil, column: nil, field: "container",
                      message: "the \(backend) backend does not run tasks in a container yet; the job would run outside the image",
                      hint: "submit it with --backend local, or leave container out")
    }
}
