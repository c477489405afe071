import BatchCore
import Foundation
import Yams

/// The config's `containers:` section: the engine local tasks run in when
/// a job names an image, how it is called, and the registries manifests may
/// name (docs/containers.md). Credentials are never in it: a registry
/// names a file of the daemon's credentials directory (LoadCredential=).
public struct ContainersConfig: Sendable, Equatable {
    /// `podman` or `docker`, found on PATH (or an absolute path to one).
    public var engine = "podman"
    /// Options before the engine's subcommand, for every call: e.g.
    /// `[--runtime, runc]`, or `[--remote, --url, unix:///run/podman/podman.sock]`
    /// for a rootful podman service the service user may use.
    public var engineOptions: [String] = []
    /// Variables set for the engine (e.g. CONTAINERS_CONF), on top of the
    /// daemon's PATH, HOME and XDG_RUNTIME_DIR.
    public var environment: [String: String] = [:]
    /// Options added to every `run`, before the manifest's own (the
    /// operator's: not checked against the manifests' allow-list).
    public var runOptions: [String] = []
    /// Registries manifests may name in `container.registry`, by name.
    public var registries: [String: Registry] = [:]

    /// A registry an operator configured.
    public struct Registry: Sendable, Equatable {
        /// Its host (and port): `myregistry.azurecr.io`.
        public var server: String
        /// The user name it takes, if it takes one.
        public var username: String?
        /// The file in the daemon's credentials directory that holds the
        /// password or token (systemd's LoadCredential=); never a value.
        public var passwordCredential: String?

        /// A registry.
        public init(server: String, username: String? = nil, passwordCredential: String? = nil) {
            self.server = server
            self.username = username
            self.passwordCredential = passwordCredential
        }

        /// Its password or token, read from the daemon's credentials
        /// directory (systemd's $CREDENTIALS_DIRECTORY; trailing newline
        /// removed); nil when it names none; throws why it cannot be read.
        /// Never logged, never on a command line.
        public func password(in credentialsDirectory: String?) throws -> String? {
            guard let credential = passwordCredential else { return nil }
            guard let dir = credentialsDirectory else {
                throw DaemonError("the daemon has no credentials directory ($CREDENTIALS_DIRECTORY) to read '\(credential)' from")
            }
            guard let data = FileManager.default.contents(atPath: "\(dir)/\(credential)") else {
                throw DaemonError("'\(credential)' is not in the daemon's credentials directory \(dir)")
            }
            var text = String(decoding: data, as: UTF8.self)
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            guard !text.isEmpty else { throw DaemonError("'\(credential)' in \(dir) is empty") }
            return text
        }
    }

    /// Every default: podman, no options, no registry.
    public init() {}

    /// The configured registry whose credentials pull `spec`'s image: the
    /// one it names, else the one whose server is the image's host (so a
    /// private image is never pulled without the credentials the operator
    /// gave for its registry, nextflow#5584). Nil for none.
    public func registry(for spec: ContainerSpec) -> (name: String, registry: Registry)? {
        if let name = spec.registry { return registries[name].map { (name, $0) } }
        guard let host = ImageReference.host(of: spec.image) else { return nil }
        return registries.sorted { $0.key < $1.key }.first { $0.value.server == host }.map { ($0.key, $0.value) }
    }

    /// Why a job's image cannot be pulled with the registries configured
    /// here, checked at intake: (field, message, hint), or nil. A registry
    /// the manifest names must be configured and serve the image, and the
    /// credentials of the one that applies must be readable.
    public func registryRefusal(_ spec: ContainerSpec, credentialsDirectory: String?) -> (field: String, message: String, hint: String)? {
        if let name = spec.registry {
            guard let r = registries[name] else {
                let known = registries.keys.sorted()
                return ("container.registry", "no registry '\(name)' is configured in this daemon",
                        known.isEmpty ? "ask the operator to add it to containers.registries, or leave registry out for a public image"
                            : "one of: \(known.joined(separator: ", "))")
            }
            // The image must be that registry's, or its credentials would
            // go with a pull from elsewhere (or not be used at all).
            guard ImageReference.host(of: spec.image) == r.server else {
                return ("container.image", "\(spec.image) is not on registry '\(name)' (\(r.server))", "name the image there: \(r.server)/NAME:TAG")
            }
        }
        if let (name, r) = registry(for: spec) {
            do { _ = try r.password(in: credentialsDirectory) } catch {
                return ("container.registry", "the credentials of registry '\(name)' cannot be read: \(error)",
                        "the operator gives them with LoadCredential=\(r.passwordCredential ?? "NAME"):FILE in the unit (docs/containers.md)")
            }
        }
        return nil
    }

    static let keys = ["engine", "engineOptions", "environment", "runOptions", "registries"]
    static let registryKeys = ["server", "username", "passwordCredential"]

    /// Reads the section (errors name the file, line and key).
    static func parse(_ node: Node, file: String) throws -> ContainersConfig {
        func fail(_ node: Node, _ field: String, _ message: String, _ hint: String? = nil) -> ConfigError {
            ConfigError(file: file, line: node.mark?.line, field: field, message: message, hint: hint)
        }
        func text(_ node: Node, _ field: String) throws -> String {
            guard let s = node.scalar?.string, !s.isEmpty, !s.unicodeScalars.contains(where: Printable.isUnsafe) else {
                throw fail(node, field, "expected text")
            }
            return s
        }
        func list(_ node: Node, _ field: String) throws -> [String] {
            guard let seq = node.sequence else { throw fail(node, field, "expected a list of text") }
            return try seq.map { try text($0, field) }
        }
        guard let map = node.mapping else { throw fail(node, "containers", "expected a mapping") }
        var c = ContainersConfig()
        for (k, v) in map {
            let key = k.string ?? ""
            let field = "containers.\(key)"
            switch key {
            case "engine":
                c.engine = try text(v, field)
                let base = (c.engine as NSString).lastPathComponent
                guard base == "podman" || base == "docker" else {
                    throw fail(v, field, "'\(c.engine)' is neither podman nor docker", "engine: podman (or docker, or an absolute path to one)")
                }
            case "engineOptions": c.engineOptions = try list(v, field)
            case "runOptions": c.runOptions = try list(v, field)
            case "environment":
                guard let env = v.mapping else { throw fail(v, field, "expected a mapping of variable names to values") }
                for (name, value) in env {
                    let n = try text(name, field)
                    guard ManifestParser.isEnvName(n) else { throw fail(name, "\(field).\(n)", "not a variable name") }
                    c.environment[n] = try text(value, "\(field).\(n)")
                }
            case "registries":
                guard let registries = v.mapping else { throw fail(v, field, "expected a mapping of registry names to their settings") }
                for (name, settings) in registries {
                    let n = try text(name, field)
                    guard Template.isIdentifier(n, max: 64) else {
                        throw fail(name, "\(field).\(n)", "'\(n)' is not a registry name", "1-64 letters, digits, '-' and '_'")
                    }
                    guard let s = settings.mapping else { throw fail(settings, "\(field).\(n)", "expected a mapping with server (and username, passwordCredential)") }
                    var server: String?
                    var r = Registry(server: "")
                    for (rk, rv) in s {
                        let f = "\(field).\(n).\(rk.string ?? "")"
                        switch rk.string ?? "" {
                        case "server":
                            let host = try text(rv, f)
                            guard ImageReference.isRegistryHost(host) else {
                                throw fail(rv, f, "'\(host)' is not a registry host", "HOST or HOST:PORT, e.g. myregistry.azurecr.io")
                            }
                            server = host
                        case "username": r.username = try text(rv, f)
                        case "passwordCredential":
                            let credential = try text(rv, f)
                            guard Template.isIdentifier(credential, max: 128) else {
                                throw fail(rv, f, "'\(credential)' is not a credential name", "the name given to LoadCredential= (letters, digits, '-', '_')")
                            }
                            r.passwordCredential = credential
                        default:
                            throw fail(rk, f, "unknown key", "a registry takes \(registryKeys.joined(separator: ", "))")
                        }
                    }
                    guard let server else { throw fail(settings, "\(field).\(n).server", "missing", "add 'server: HOST'") }
                    r.server = server
                    c.registries[n] = r
                }
            default:
                throw fail(k, field, "unknown key", Suggest.nearest(to: key, in: keys).map { "did you mean '\($0)'?" }
                           ?? "containers takes \(keys.joined(separator: ", "))")
            }
        }
        return c
    }
}
