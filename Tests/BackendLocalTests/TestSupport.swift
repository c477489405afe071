import Foundation

/// Where the built executables are: $BATCHD_BIN, else .build/debug of this package.
func binDirectory() -> String {
    if let dir = ProcessInfo.processInfo.environment["BATCHD_BIN"], !dir.isEmpty { return dir }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return root.appendingPathComponent(".build/debug").path
}

func tempDirectory(_ tag: String) throws -> String {
    let dir = NSTemporaryDirectory() + "batchd-\(tag)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}
