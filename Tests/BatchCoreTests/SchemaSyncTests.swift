import BatchCore
import Foundation
import Testing

/// The JSON Schema editors use (docs/manifest.schema.json) must accept exactly
/// the keys the parser accepts, so the two never drift apart.
@Suite("Manifest JSON Schema matches the parser")
struct SchemaSyncTests {
    let schema: [String: Any]

    init() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = try Data(contentsOf: root.appendingPathComponent("docs/manifest.schema.json"))
        schema = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func keys(_ object: Any?) -> Set<String> {
        Set(((object as? [String: Any])?["properties"] as? [String: Any])?.keys.map { $0 } ?? [])
    }

    func prop(_ path: String...) -> Any? {
        var node: Any? = schema
        for p in path {
            if let i = Int(p) { node = (node as? [Any])?[i] } else {
                let dict = node as? [String: Any]
                node = dict?[p] ?? (dict?["properties"] as? [String: Any])?[p]
            }
        }
        return node
    }

    @Test func topLevel() { #expect(keys(schema) == Set(ManifestKeys.top)) }
    @Test func pool() { #expect(keys(prop("pool")) == Set(shipped.poolKeys)) }
    @Test func inputs() { #expect(keys(prop("inputs", "oneOf", "1")) == Set(ManifestKeys.inputs)) }
    @Test func factory() { #expect(keys(prop("tasks", "oneOf", "1")) == Set(ManifestKeys.taskFactory)) }
    @Test func integerRange() { #expect(keys(prop("tasks", "oneOf", "1", "forEachInteger")) == Set(ManifestKeys.integerRange)) }
    @Test func rows() { #expect(keys(prop("tasks", "oneOf", "1", "forEachRow", "oneOf", "1")) == Set(ManifestKeys.rows)) }
    @Test func entry() { #expect(keys(prop("$defs", "taskEntry")) == Set(ManifestKeys.taskEntry)) }
    @Test func outputs() { #expect(keys(prop("outputs", "oneOf", "1")) == Set(ManifestKeys.outputs)) }
    @Test func merge() { #expect(keys(prop("outputs", "oneOf", "1", "merge")) == Set(ManifestKeys.merge)) }
    @Test func mergeFormat() {
        #expect(Set(prop("outputs", "oneOf", "1", "merge", "format", "enum") as? [String] ?? []) == Set(MergeSpec.Format.allCases.map(\.rawValue)))
    }
    @Test func limits() { #expect(keys(prop("limits")) == Set(ManifestKeys.limits)) }
    @Test func backends() { #expect(Set(prop("backend", "examples") as? [String] ?? []) == Set(shipped.names)) }
    @Test func cleanup() { #expect(Set(prop("cleanup", "enum") as? [String] ?? []) == Set(CleanupPolicy.allCases.map(\.rawValue))) }
}
