import EaselCore
import Foundation
import Testing

@testable import EaselRunners

private func decode(_ json: String) throws -> RunnerEvent {
    try RunnerEvent.decode(Data(json.utf8))
}

@Suite struct RunnerEventTests {
    @Test func hello() throws {
        let event = try decode(#"""
            {"type": "hello", "protocol": 1, "runner_version": "0.1.0", "pid": 4242,
             "engines": ["diffusers"], "device": "cpu", "device_name": "x86_64 (2 threads)",
             "torch_version": "2.13.0+cpu", "samplers": ["Euler", "Euler a", "DDIM"]}
            """#)
        guard case .hello(let hello) = event else { Issue.record("expected hello, got \(event)"); return }
        #expect(hello.protocol == 1)
        #expect(hello.runnerVersion == "0.1.0")
        #expect(hello.pid == 4242)
        #expect(hello.engines == ["diffusers"])
        #expect(hello.device == "cpu")
        #expect(hello.deviceName == "x86_64 (2 threads)")
        #expect(hello.torchVersion == "2.13.0+cpu")
        #expect(hello.samplers == ["Euler", "Euler a", "DDIM"])
    }

    @Test func helloWithoutOptionalFields() throws {
        let event = try decode(#"""
            {"type": "hello", "protocol": 1, "runner_version": "0.1.0", "pid": 1, "engines": [],
             "device": "cuda", "device_name": null, "samplers": []}
            """#)
        guard case .hello(let hello) = event else { Issue.record("expected hello, got \(event)"); return }
        #expect(hello.deviceName == nil)
        #expect(hello.torchVersion == nil)
        #expect(!hello.cancelEndsRunner)
    }

    @Test func helloOfAnEngineThatCannotStopSaysSo() throws {
        let event = try decode(#"""
            {"type": "hello", "protocol": 1, "runner_version": "0.1.0", "pid": 2, "engines": ["stable-diffusion.cpp"],
             "device": "cpu", "device_name": "x86_64", "torch_version": null, "samplers": ["Euler"],
             "weight_types": ["auto", "q8_0"], "cancel": "exit"}
            """#)
        guard case .hello(let hello) = event else { Issue.record("expected hello, got \(event)"); return }
        #expect(hello.cancelEndsRunner)
        #expect(hello.weightTypes == ["auto", "q8_0"])
    }

    @Test func loaded() throws {
        let event = try decode(#"""
            {"type": "loaded", "id": "load-1", "model_id": "demo-tiny-random",
             "architecture": "sd1", "device": "cpu", "dtype": "float32",
             "load_seconds": 0.84, "load_count": 1, "memory_bytes": 734003200}
            """#)
        guard case .loaded(let loaded) = event else { Issue.record("expected loaded, got \(event)"); return }
        #expect(loaded.id == "load-1")
        #expect(loaded.modelId == "demo-tiny-random")
        #expect(loaded.architecture == "sd1")
        #expect(loaded.device == "cpu")
        #expect(loaded.dtype == "float32")
        #expect(loaded.loadSeconds == 0.84)
        #expect(loaded.loadCount == 1)
        #expect(loaded.memoryBytes == 734_003_200)
        #expect(loaded.engine == nil)
    }

    @Test func progress() throws {
        let event = try decode(#"{"type": "progress", "id": "gen-7", "step": 3, "total": 20}"#)
        guard case .progress(let id, let progress, nil) = event else {
            Issue.record("expected progress, got \(event)"); return
        }
        #expect(id == "gen-7")
        #expect(progress == GenerationProgress(step: 3, total: 20))
    }

    @Test func progressWithPreview() throws {
        let event = try decode(
            #"{"type": "progress", "id": "gen-7", "step": 2, "total": 6, "preview": {"format": "jpeg", "width": 16, "height": 8, "data": "AQID"}}"#
        )
        guard case .progress(_, let progress, nil) = event else {
            Issue.record("expected progress, got \(event)"); return
        }
        #expect(progress.preview == .init(format: .jpeg, width: 16, height: 8, data: Data([1, 2, 3])))
    }

    @Test func mergedProgressCarriesAPreviewPerMember() throws {
        let event = try decode(
            #"{"type": "progress", "id": "gen-8", "step": 2, "total": 6, "previews": [{"format": "jpeg", "width": 16, "height": 8, "data": "AQID"}, null]}"#
        )
        guard case .progress(_, let progress, let previews?) = event else {
            Issue.record("expected merged progress, got \(event)"); return
        }
        #expect(progress.preview == nil)
        #expect(previews == [.init(format: .jpeg, width: 16, height: 8, data: Data([1, 2, 3])), nil])
    }

    @Test func mergedResultImagesAreSortedByMember() throws {
        func image(_ seed: Int, _ member: Int?) -> String {
            #"{"seed": \#(seed), "format": "png", "width": 8, "height": 8, "data": "AQID"\#(member.map { #", "member": \#($0)"# } ?? "")}"#
        }
        func result(_ images: [String]) throws -> GenerationResult {
            let event = try decode(#"{"type": "result", "id": "g", "engine_seconds": 1, "images": [\#(images.joined(separator: ","))]}"#)
            guard case .result(_, let result) = event else { throw Frame.Malformed(description: "not a result") }
            return result
        }
        let merged = try result([image(1, 0), image(5, 1), image(2, 0)])
        #expect(merged.imagesByMember(seedCounts: [2, 1])?.map { $0.map(\.seed) } == [[1, 2], [5]])
        #expect(merged.imagesByMember(seedCounts: [1, 2]) == nil)
        #expect(try result([image(1, 0), image(2, 3)]).imagesByMember(seedCounts: [1, 1]) == nil)
        #expect(try result([image(1, nil)]).imagesByMember(seedCounts: [1])?.count == 1)
        #expect(try result([image(1, nil)]).imagesByMember(seedCounts: [1, 0]) == nil)
    }

    @Test func resultCarriesTheImageBytes() throws {
        let png = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0xFF, 0x10])
        let event = try decode(#"""
            {"type": "result", "id": "gen-7", "engine_seconds": 12.5,
             "images": [{"seed": 4294967296, "format": "png", "width": 512, "height": 448,
                         "data": "\#(png.base64EncodedString())"}]}
            """#)
        guard case .result(let id, let result) = event else { Issue.record("expected result, got \(event)"); return }
        #expect(id == "gen-7")
        #expect(result.engineSeconds == 12.5)
        let image = try #require(result.images.first)
        #expect(result.images.count == 1)
        #expect(image.seed == 4_294_967_296)
        #expect(image.format == .png)
        #expect(image.width == 512)
        #expect(image.height == 448)
        #expect(image.data == png)
    }

    @Test func errorWithID() throws {
        let event = try decode(#"{"type": "error", "id": "gen-7", "code": "cancelled", "message": "cancelled at step 3 of 20"}"#)
        guard case .failure(let id, let code, let message, _) = event else {
            Issue.record("expected error, got \(event)"); return
        }
        #expect(id == "gen-7")
        #expect(code == "cancelled")
        #expect(message == "cancelled at step 3 of 20")
    }

    @Test(arguments: [
        #"{"type": "error", "id": null, "code": "invalid_request", "message": "bad frame"}"#,
        #"{"type": "error", "code": "invalid_request", "message": "bad frame"}"#,
    ])
    func errorWithoutID(json: String) throws {
        let event = try decode(json)
        guard case .failure(let id, let code, let message, _) = event else {
            Issue.record("expected error, got \(event)"); return
        }
        #expect(id == nil)
        #expect(code == "invalid_request")
        #expect(message == "bad frame")
    }

    @Test func pong() throws {
        let event = try decode(#"{"type": "pong", "id": "ping-3"}"#)
        guard case .pong(let id) = event else { Issue.record("expected pong, got \(event)"); return }
        #expect(id == "ping-3")
    }

    @Test func bye() throws {
        let event = try decode(#"{"type": "bye"}"#)
        guard case .bye = event else { Issue.record("expected bye, got \(event)"); return }
    }

    @Test(arguments: [
        #"{"type": "hullo"}"#,
        #"{"type": "progress", "step": 3, "total": 20}"#,
        #"{"type": "pong"}"#,
    ])
    func malformedMessagesThrow(json: String) {
        #expect(throws: Frame.Malformed.self) { try decode(json) }
    }

    @Test(arguments: [
        "not json",
        #"{"id": "x"}"#,
        #"{"type": "progress", "id": "gen-7", "step": "three", "total": 20}"#,
        #"{"type": "result", "id": "gen-7", "engine_seconds": 1, "images": [{"seed": 1, "format": "gif", "width": 1, "height": 1, "data": ""}]}"#,
        #"{"type": "error", "id": "gen-7"}"#,
    ])
    func undecodableMessagesThrow(json: String) {
        #expect(throws: (any Error).self) { try decode(json) }
    }
}

@Suite struct RunnerErrorMappingTests {
    @Test(arguments: [
        ("cancelled", EaselError.Code.cancelled),
        ("out_of_memory", .outOfMemory),
        ("model_load_failed", .modelLoadFailed),
        ("unsupported_model", .unsupportedModel),
        ("engine_error", .engineError),
        ("engine_unavailable", .engineUnavailable),
        ("busy", .runnerProtocolError),
        ("no_such_code", .runnerProtocolError),
    ])
    func runnerCodeMapsToEaselCode(runnerCode: String, expected: EaselError.Code) {
        let error = Runner.easelError(runnerCode: runnerCode, message: "details here")
        #expect(error.code == expected)
        #expect(error.message.contains("details here"))
    }

    @Test func modelLoadFailedNamesTheModelField() {
        #expect(Runner.easelError(runnerCode: "model_load_failed", message: "corrupt").field == "model")
        #expect(Runner.easelError(runnerCode: "engine_error", message: "boom").field == nil)
        #expect(Runner.easelError(runnerCode: "engine_unavailable", message: "install it").httpStatus == 503)
    }

    @Test func unknownCodeIsNamedInTheMessage() {
        let error = Runner.easelError(runnerCode: "no_such_code", message: "huh")
        #expect(error.message.contains("no_such_code"))
        #expect(error.httpStatus == 502)
    }
}
