import Foundation

/// Length-prefixed frames of the runner protocol (docs/runner-protocol.md): a 4-byte
/// big-endian length, then that many bytes of JSON.
public enum Frame {
    public static let maxLength = 512 * 1024 * 1024

    public struct Malformed: Error, CustomStringConvertible {
        public let description: String
    }

    public static func encode(_ payload: Data) -> Data {
        let length = UInt32(payload.count)
        var frame = Data([UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)])
        frame.append(payload)
        return frame
    }

    /// Collects bytes as they arrive and hands out whole frames.
    public struct Decoder: Sendable {
        private var buffer = Data()

        public init() {}

        public mutating func append(_ bytes: some Sequence<UInt8>) {
            buffer.append(contentsOf: bytes)
        }

        /// The next whole frame's payload, nil until one has fully arrived.
        public mutating func next() throws -> Data? {
            guard buffer.count >= 4 else { return nil }
            let start = buffer.startIndex
            let length = buffer[start..<start + 4].reduce(0) { $0 << 8 | Int($1) }
            guard length <= Frame.maxLength else {
                throw Malformed(description: "frame of \(length) bytes exceeds the \(Frame.maxLength)-byte limit")
            }
            guard buffer.count >= 4 + length else { return nil }
            let payload = Data(buffer[start + 4..<start + 4 + length])
            buffer = Data(buffer[(start + 4 + length)...])
            return payload
        }

        /// Bytes received that do not make a whole frame yet.
        public var pendingByteCount: Int { buffer.count }
    }
}
