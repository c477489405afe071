/// JSON written straight into bytes, for request bodies sent by the
/// thousand: Foundation's JSONEncoder took 43% of the daemon's CPU when
/// adding 10,000 tasks to an Azure job (its boxing of every key and value),
/// where the bodies are a fixed shape of strings and integers.
///
/// Strings are escaped as RFC 8259 requires (quotation mark, reverse
/// solidus, and the control characters U+0000–U+001F); everything else is
/// written as UTF-8, which a Swift string always is. The caller writes the
/// punctuation between values with `raw`.
public struct JSONText: Sendable {
    /// What has been written.
    public private(set) var bytes: [UInt8] = []

    /// An empty text with room for `capacity` bytes.
    public init(capacity: Int = 512) { bytes.reserveCapacity(capacity) }

    /// Punctuation or a key the caller knows to need no escaping.
    public mutating func raw(_ s: StaticString) {
        s.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// `"key":` for a key that needs no escaping.
    public mutating func key(_ s: StaticString) {
        bytes.append(UInt8(ascii: "\""))
        raw(s)
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    /// A quoted, escaped string.
    public mutating func string(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            var start = 0
            for (i, b) in utf8.enumerated() where b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") {
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<i]))
                switch b {
                case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
                case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                default:
                    let hex = Array("0123456789abcdef".utf8)
                    bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(b >> 4)], hex[Int(b & 15)]])
                }
                start = i + 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<utf8.count]))
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// An integer.
    public mutating func int(_ i: Int) {
        bytes.append(contentsOf: String(i).utf8)
    }
}
