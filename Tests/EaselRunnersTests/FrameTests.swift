import Foundation
import Testing

@testable import EaselRunners

/// The 4 big-endian bytes of a frame length.
private func lengthBytes(_ length: UInt32) -> Data {
    withUnsafeBytes(of: length.bigEndian) { Data($0) }
}

@Suite struct FrameTests {
    @Test func encodePrefixesBigEndianLength() {
        #expect(Frame.encode(Data("hi".utf8)) == Data([0, 0, 0, 2, 0x68, 0x69]))
        let payload = Data(repeating: 7, count: 0x01_02_03)
        let frame = Frame.encode(payload)
        #expect(frame.prefix(4) == Data([0x00, 0x01, 0x02, 0x03]))
        #expect(frame.dropFirst(4) == payload)
    }

    @Test func decoderWaitsForTheWholeFrame() throws {
        let frame = Frame.encode(Data(#"{"type": "bye"}"#.utf8))
        var decoder = Frame.Decoder()
        #expect(try decoder.next() == nil)
        decoder.append(frame.prefix(3))
        #expect(try decoder.next() == nil)
        decoder.append(frame.dropFirst(3).dropLast())
        #expect(try decoder.next() == nil)
        #expect(decoder.pendingByteCount == frame.count - 1)
        decoder.append(frame.suffix(1))
        #expect(try decoder.next() == Data(#"{"type": "bye"}"#.utf8))
        #expect(try decoder.next() == nil)
        #expect(decoder.pendingByteCount == 0)
    }

    @Test func frameSplitByteByByte() throws {
        let payload = Data(#"{"type": "pong", "id": "ping-1"}"#.utf8)
        var decoder = Frame.Decoder()
        var payloads: [Data] = []
        for byte in Frame.encode(payload) {
            decoder.append([byte])
            if let next = try decoder.next() { payloads.append(next) }
        }
        #expect(payloads == [payload])
        #expect(decoder.pendingByteCount == 0)
    }

    @Test func twoFramesInOneChunk() throws {
        let first = Data(#"{"type": "progress", "id": "g", "step": 1, "total": 2}"#.utf8)
        let second = Data(#"{"type": "bye"}"#.utf8)
        var decoder = Frame.Decoder()
        decoder.append(Frame.encode(first) + Frame.encode(second) + Data([0, 0]))
        #expect(try decoder.next() == first)
        #expect(try decoder.next() == second)
        #expect(try decoder.next() == nil)
        #expect(decoder.pendingByteCount == 2)
    }

    @Test func zeroLengthPayload() throws {
        #expect(Frame.encode(Data()) == Data([0, 0, 0, 0]))
        var decoder = Frame.Decoder()
        decoder.append(Frame.encode(Data()) + Frame.encode(Data("x".utf8)))
        #expect(try decoder.next() == Data())
        #expect(try decoder.next() == Data("x".utf8))
    }

    @Test(arguments: [UInt32(Frame.maxLength) + 1, UInt32.max])
    func lengthOverTheLimitIsMalformed(length: UInt32) {
        var decoder = Frame.Decoder()
        decoder.append(lengthBytes(length))
        #expect(throws: Frame.Malformed.self) { try decoder.next() }
    }

    @Test func lengthAtTheLimitWaitsForThePayload() throws {
        var decoder = Frame.Decoder()
        decoder.append(lengthBytes(UInt32(Frame.maxLength)))
        #expect(try decoder.next() == nil)
    }
}
