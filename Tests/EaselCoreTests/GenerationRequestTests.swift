import EaselCore
import Foundation
import Testing

private func decodeError(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> EaselError {
    try #require(throws: EaselError.self, sourceLocation: sourceLocation) {
        try GenerationRequest.decode(from: Data(json.utf8))
    }
}

@Suite struct GenerationRequestTests {
    @Test(arguments: ["{\"prompt\": ", "not json", "", "{'prompt': 'a cat'}"])
    func malformedJSON(json: String) throws {
        let error = try decodeError(json)
        #expect(error.code == .invalidJSON)
        #expect(error.httpStatus == 400)
    }

    @Test(arguments: [#"[{"prompt": "a cat"}]"#, #""a cat""#, "42", "null"])
    func bodyThatIsNotAnObject(json: String) throws {
        let error = try decodeError(json)
        #expect(error.code == .invalidJSON)
        #expect(error.httpStatus == 400)
    }

    @Test func unknownFieldIsNamed() throws {
        let error = try decodeError(#"{"prompt": "a cat", "stpes": 10}"#)
        #expect(error.code == .unknownField)
        #expect(error.field == "stpes")
        #expect(error.message.contains("stpes"))
        #expect(error.message.contains("steps"))  // the known fields are listed
        #expect(error.httpStatus == 422)
    }

    @Test(arguments: [
        (#"{"steps": "ten"}"#, "steps"),
        (#"{"prompt": 5}"#, "prompt"),
        (#"{"cfg_scale": "high"}"#, "cfg_scale"),
        (#"{"width": true}"#, "width"),
        (#"{"batch_size": [1]}"#, "batch_size"),
        // Numbers that do not fit an integer field: swift-foundation reports these
        // without a coding path, so decode(from:) has to find the field itself.
        (#"{"seed": 1.5}"#, "seed"),
        (#"{"prompt": "a cat", "width": 512, "steps": 10.5}"#, "steps"),
        (#"{"seed": 99999999999999999999}"#, "seed"),
    ])
    func wrongTypeNamesTheField(json: String, field: String) throws {
        let error = try decodeError(json)
        #expect(error.code == .invalidField)
        #expect(error.field == field)
        #expect(error.message.hasPrefix(field))
    }

    @Test func snakeCaseKeysDecode() throws {
        let json = #"""
            {"prompt": "a cat", "negative_prompt": "dog", "width": 640, "height": 448, "steps": 25,
             "cfg_scale": 7.5, "sampler": "DDIM", "seed": 123, "batch_size": 2, "model": "m",
             "output_format": "jpeg", "quality": 80}
            """#
        let request = try GenerationRequest.decode(from: Data(json.utf8))
        #expect(request == GenerationRequest(
            prompt: "a cat", negativePrompt: "dog", width: 640, height: 448, steps: 25, cfgScale: 7.5,
            sampler: "DDIM", seed: 123, batchSize: 2, model: "m", outputFormat: "jpeg", quality: 80
        ))
    }

    @Test func emptyObjectLeavesEverythingUnset() throws {
        #expect(try GenerationRequest.decode(from: Data("{}".utf8)) == GenerationRequest())
    }

    @Test func nullFieldsAreUnset() throws {
        let request = try GenerationRequest.decode(from: Data(#"{"prompt": "a cat", "seed": null}"#.utf8))
        #expect(request == GenerationRequest(prompt: "a cat"))
    }
}
