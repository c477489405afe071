import BatchCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A job's `secrets:` (docs/manifest.md): environment variables whose values
/// are read from files the submitter may read, as the submitter, at each
/// launch. A value is held only in memory on its way to the task: never
/// stored (the job keeps names and paths), logged, or put in an error,
/// which names the variable and the file only.
public enum Secrets {
    /// Why a secret cannot be read: which one, and the reason (naming its
    /// file, never its content).
    public struct Failure: Error, Sendable, CustomStringConvertible {
        /// The variable, nil for all of them together.
        public var name: String?
        public var reason: String
        public var description: String { "\(name.map { "secrets.\($0)" } ?? "secrets"): \(reason)" }
    }

    /// The value of one secret: the file's content, at most
    /// `Bounds.secretBytes` of UTF-8 with no NUL byte, one trailing newline
    /// (`\n` or `\r\n`) dropped, as `$(cat FILE)` would.
    public static func read(_ name: String, from path: String, policy: AccessPolicy) throws(Failure) -> String {
        let bytes: [UInt8]
        do { bytes = try policy.readFile(path, maxBytes: Bounds.secretBytes) } catch {
            throw Failure(name: name, reason: error.description)
        }
        guard !bytes.contains(0) else {
            throw Failure(name: name, reason: "\(AccessPolicy.shown(path)) holds a NUL byte, which no environment variable can")
        }
        guard var text = String(validating: bytes, as: UTF8.self) else {
            throw Failure(name: name, reason: "\(AccessPolicy.shown(path)) is not UTF-8 text")
        }
        if text.hasSuffix("\r\n") { text.removeLast() } else if text.hasSuffix("\n") { text.removeLast() }
        return text
    }

    /// Every secret of a job (name → absolute path), read as the submitter;
    /// at most `Bounds.secretsTotalBytes` together.
    public static func values(_ secrets: [String: String], policy: AccessPolicy) throws(Failure) -> [String: String] {
        var out: [String: String] = [:]
        var total = 0
        for (name, path) in secrets.sorted(by: { $0.key < $1.key }) {
            let value = try read(name, from: path, policy: policy)
            total += name.utf8.count + value.utf8.count + 2
            guard total <= Bounds.secretsTotalBytes else {
                throw Failure(name: nil, reason: "together they come to more than \(Bounds.secretsTotalBytes) bytes")
            }
            out[name] = value
        }
        return out
    }

    /// What batchd-exec reads (`--secrets-fd`, `--secrets-file`): one
    /// `NAME=VALUE` after another, each ended by a NUL byte.
    public static func block(_ values: [String: String]) -> [UInt8] {
        var out: [UInt8] = []
        for (name, value) in values.sorted(by: { $0.key < $1.key }) {
            out += Array("\(name)=\(value)".utf8)
            out.append(0)
        }
        return out
    }
}
