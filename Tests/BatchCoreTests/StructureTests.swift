import Foundation
import Testing

/// The module rules docs/architecture.md states, checked on the sources:
/// BatchCore names no backend, and no backend reaches the Store (each acts
/// through its job's handle and its ledger).
@Suite("module structure")
struct StructureTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Sources").standardizedFileURL.path

    /// Each Swift file under `dir` and its lines.
    func files(under dir: String) -> [(String, [Substring])] {
        let fm = FileManager.default
        return (fm.subpaths(atPath: dir) ?? []).filter { $0.hasSuffix(".swift") }.sorted().compactMap { rel in
            fm.contents(atPath: "\(dir)/\(rel)").map { (rel, String(decoding: $0, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)) }
        }
    }

    @Test("BatchCore names no backend: no backend's name in its code or its comments")
    func coreNamesNoBackend() {
        let names = ["azure", "slurm", "\"local\"", "\"fake\""]
        var found: [String] = []
        for (file, lines) in files(under: "\(Self.sources)/BatchCore") {
            for (i, line) in lines.enumerated() where names.contains(where: { line.lowercased().contains($0) }) {
                found.append("BatchCore/\(file):\(i + 1): \(line.trimmingCharacters(in: .whitespaces))")
            }
        }
        #expect(found.isEmpty, "\(found.joined(separator: "\n"))")
    }

    @Test("no source file under Sources/Backend* calls the Store or imports GRDB")
    func backendsReachNoStore() throws {
        let store = try Regex(#"\bStore\b|\bstore\.(?!place|put|contains)|import GRDB"#)
        var found: [String] = []
        let backends = (try FileManager.default.contentsOfDirectory(atPath: Self.sources)).filter { $0.hasPrefix("Backend") }.sorted()
        #expect(backends.count >= 3, "\(backends)")
        for module in backends {
            for (file, lines) in files(under: "\(Self.sources)/\(module)") {
                for (i, line) in lines.enumerated() {
                    let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                    if code.contains(store) { found.append("\(module)/\(file):\(i + 1): \(line.trimmingCharacters(in: .whitespaces))") }
                }
            }
        }
        #expect(found.isEmpty, "\(found.joined(separator: "\n"))")
    }
}
