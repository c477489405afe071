import BatchBackend
import BatchDaemon
import Foundation
import Testing

@Suite("journald message catalog")
struct CatalogTests {
    @Test("every MESSAGE_ID the daemon logs is explained in systemd/batchd.catalog, and ids are unique")
    func catalogCoversEveryID() throws {
        let catalog = try #require(read("\(repoRoot)/systemd/batchd.catalog"))
        let ids = MessageID.all.map(\.1)
        #expect(Set(ids).count == ids.count)
        for (name, id) in MessageID.all {
            #expect(id.count == 32 && id.allSatisfy(\.isHexDigit), "\(name)")
            #expect(catalog.contains("-- \(id)\nSubject: "), "\(name) \(id) missing from the catalog")
        }
        let entries = catalog.components(separatedBy: "\n").filter { $0.hasPrefix("-- ") }.count
        #expect(entries == ids.count)
    }
}
