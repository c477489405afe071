import CYaml

/// Finds a YAML alias standing as (or inside) a mapping key, reading
/// libyaml's events in one linear pass, before anything is composed.
///
/// Yams compares mapping keys by value, so an alias to a large anchored
/// node used as a key is expanded in full: a 361-byte manifest of nested
/// anchors with one `*h: *h` held the parser for over two minutes (found by
/// the fuzzer; Tests/Fuzz/FailCases/alias-as-key-hang.yaml). Aliases stay
/// allowed as values, where they are shared, not copied.
enum YAMLAliasKeys {
    /// The 1-based line and column of the first alias in a key, if any.
    /// Syntax errors are left for the parser proper to report.
    static func find(in text: String) -> (line: Int, column: Int)? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBufferPointer { buffer -> (line: Int, column: Int)? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            struct Frame { var isMapping: Bool; var expectKey: Bool; var isKey: Bool }
            var frames: [Frame] = []
            var keyNesting = 0
            // Whether the node starting now is a mapping key.
            func startsKey() -> Bool { frames.last.map { $0.isMapping && $0.expectKey } ?? false }
            func ended() {
                if let i = frames.indices.last, frames[i].isMapping { frames[i].expectKey.toggle() }
            }
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
                let type = event.type
                let mark = (line: Int(event.start_mark.line) + 1, column: Int(event.start_mark.column) + 1)
                yaml_event_delete(&event)
                switch type {
                case YAML_ALIAS_EVENT:
                    if keyNesting > 0 || startsKey() { return mark }
                    ended()
                case YAML_SCALAR_EVENT:
                    ended()
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    let key = startsKey()
                    if key { keyNesting += 1 }
                    frames.append(Frame(isMapping: type == YAML_MAPPING_START_EVENT, expectKey: true, isKey: key))
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    if let f = frames.popLast(), f.isKey { keyNesting -= 1 }
                    ended()
                case YAML_STREAM_END_EVENT, YAML_NO_EVENT:
                    return nil
                default:
                    break
                }
            }
        }
    }
}
