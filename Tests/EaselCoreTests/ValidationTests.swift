import EaselCore
import Foundation
import Testing

private let limits = Limits(
    maxWidth: 1024, maxHeight: 1024, maxPixels: 512 * 768, maxSteps: 50, maxBatch: 4, maxPromptLength: 100
)

private func validate(_ request: GenerationRequest, randomSeed: UInt64 = 42) throws -> GenerationSpec {
    try request.validated(modelID: "m", limits: limits, randomSeed: { randomSeed })
}

/// A request that fails validation, the field the error must name and texts its message
/// must hold (the allowed range or the fix).
struct BadRequest: Sendable, CustomTestStringConvertible {
    let request: GenerationRequest
    let field: String
    let mentions: [String]
    let label: String

    init(_ label: String, _ request: GenerationRequest, field: String, mentions: [String]) {
        self.label = label
        self.request = request
        self.field = field
        self.mentions = mentions
    }

    var testDescription: String { label }
}

@Suite struct ValidationTests {
    @Test func defaultsAreFilledIn() throws {
        let spec = try validate(GenerationRequest(prompt: "a cat"))
        #expect(spec.modelID == "m")
        #expect(spec.prompt == "a cat")
        #expect(spec.negativePrompt == "")
        #expect(spec.width == 512 && spec.height == 512)
        #expect(spec.steps == 20)
        #expect(spec.cfgScale == 7)
        #expect(spec.sampler == "Euler a")
        #expect(spec.outputFormat == .png)
        #expect(spec.quality == 90)
        #expect(spec.seeds == [42])
        #expect(spec.batchSize == 1)
    }

    @Test func missingPromptIsEmpty() throws {
        #expect(try validate(GenerationRequest()).prompt == "")
    }

    static let badRequests: [BadRequest] = [
        BadRequest("steps -1", GenerationRequest(steps: -1), field: "steps", mentions: ["between 1 and 50", "-1"]),
        BadRequest("steps 0", GenerationRequest(steps: 0), field: "steps", mentions: ["between 1 and 50"]),
        BadRequest("steps over limit", GenerationRequest(steps: 51), field: "steps", mentions: ["between 1 and 50", "51"]),
        BadRequest("width not multiple of 8", GenerationRequest(width: 500), field: "width", mentions: ["multiple of 8", "496"]),
        BadRequest("height not multiple of 8", GenerationRequest(height: 517), field: "height", mentions: ["multiple of 8", "512"]),
        BadRequest("width too small", GenerationRequest(width: 32), field: "width", mentions: ["between 64 and 1024"]),
        BadRequest("height too large", GenerationRequest(height: 1032), field: "height", mentions: ["between 64 and 1024"]),
        BadRequest(
            "too many pixels", GenerationRequest(width: 768, height: 768), field: "width",
            mentions: ["589824", "393216"]
        ),
        BadRequest("cfg_scale 31", GenerationRequest(cfgScale: 31), field: "cfg_scale", mentions: ["between 0 and 30"]),
        BadRequest("cfg_scale negative", GenerationRequest(cfgScale: -1), field: "cfg_scale", mentions: ["between 0 and 30"]),
        BadRequest(
            "unknown sampler", GenerationRequest(sampler: "Eulr"), field: "sampler",
            mentions: ["'Eulr'", "Euler a", "DPM++ 2M Karras", "DDIM"]
        ),
        BadRequest("batch_size 0", GenerationRequest(batchSize: 0), field: "batch_size", mentions: ["between 1 and 4"]),
        BadRequest("batch_size over max", GenerationRequest(batchSize: 5), field: "batch_size", mentions: ["between 1 and 4"]),
        BadRequest("seed -2", GenerationRequest(seed: -2), field: "seed", mentions: ["-1", "4294967295"]),
        BadRequest("seed over 32 bits", GenerationRequest(seed: 4_294_967_296), field: "seed", mentions: ["4294967295"]),
        BadRequest("output_format gif", GenerationRequest(outputFormat: "gif"), field: "output_format", mentions: ["png, jpeg or webp", "gif"]),
        BadRequest("quality 0", GenerationRequest(quality: 0), field: "quality", mentions: ["between 1 and 100"]),
        BadRequest("quality 101", GenerationRequest(quality: 101), field: "quality", mentions: ["between 1 and 100"]),
        BadRequest(
            "prompt too long", GenerationRequest(prompt: String(repeating: "a", count: 101)), field: "prompt",
            mentions: ["101", "100"]
        ),
        BadRequest(
            "negative prompt too long", GenerationRequest(negativePrompt: String(repeating: "b", count: 101)),
            field: "negative_prompt", mentions: ["101", "100"]
        ),
    ]

    @Test(arguments: badRequests)
    func badFieldIsNamedWithTheFix(bad: BadRequest) throws {
        let error = try #require(throws: EaselError.self) { try validate(bad.request) }
        #expect(error.code == .invalidField)
        #expect(error.httpStatus == 422)
        #expect(error.field == bad.field)
        #expect(error.message.hasPrefix(bad.field))
        for text in bad.mentions {
            #expect(error.message.contains(text), "\(error.message) should mention \(text)")
        }
    }

    @Test func limitsThemselvesAreAllowed() throws {
        let longest = String(repeating: "a", count: 100)
        let spec = try validate(GenerationRequest(
            prompt: longest, width: 512, height: 768, steps: 50, cfgScale: 30, seed: 4_294_967_295, batchSize: 4,
            quality: 100
        ))
        #expect(spec.steps == 50)
        #expect(spec.seeds.first == 4_294_967_295)
        #expect(try validate(GenerationRequest(width: 64, height: 64, steps: 1, cfgScale: 0, seed: 0, quality: 1)).seeds == [0])
    }

    @Test(arguments: [
        ("euler_a", "Euler a"), ("EULER A", "Euler a"), ("Euler_A", "Euler a"), ("k_euler_a", "Euler a"),
        ("euler", "Euler"), ("dpmpp_2m_karras", "DPM++ 2M Karras"), ("plms", "PNDM"), ("ddim", "DDIM"),
    ])
    func samplerAliasesResolve(name: String, expected: String) throws {
        #expect(try validate(GenerationRequest(sampler: name)).sampler == expected)
    }

    @Test(arguments: [("jpg", ImageFormat.jpeg), ("JPG", .jpeg), ("jpeg", .jpeg), ("PNG", .png), ("webp", .webp)])
    func outputFormatNames(name: String, expected: ImageFormat) throws {
        #expect(try validate(GenerationRequest(outputFormat: name)).outputFormat == expected)
    }

    @Test(arguments: [nil, Int64(-1)])
    func randomSeedIsDrawnFromTheInjectedSource(seed: Int64?) throws {
        #expect(try validate(GenerationRequest(seed: seed), randomSeed: 987_654).seeds == [987_654])
    }

    @Test func batchSeedsCountUpFromTheFirst() throws {
        let spec = try validate(GenerationRequest(seed: 10, batchSize: 3))
        #expect(spec.seeds == [10, 11, 12])
        #expect(spec.batchSize == 3)
    }

    @Test func randomSeedIsUsedForTheWholeBatch() throws {
        #expect(try validate(GenerationRequest(batchSize: 2), randomSeed: 7).seeds == [7, 8])
    }
}

@Suite struct InfotextTests {
    @Test func matchesAutomatic1111Layout() throws {
        let spec = try validate(GenerationRequest(prompt: "a cat", negativePrompt: "dog", seed: 10, batchSize: 2))
        #expect(spec.infotext(forImage: 1, version: "0.1.0") == """
            a cat
            Negative prompt: dog
            Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 11, Size: 512x512, Model: m, Version: Easel 0.1.0
            """)
    }

    @Test func emptyNegativePromptLineIsOmitted() throws {
        let spec = try validate(GenerationRequest(
            prompt: "a cat", width: 640, height: 448, steps: 30, cfgScale: 7.5, sampler: "dpmpp_2m", seed: 5
        ))
        #expect(spec.infotext(forImage: 0, version: "0.1.0") == """
            a cat
            Steps: 30, Sampler: DPM++ 2M, CFG scale: 7.5, Seed: 5, Size: 640x448, Model: m, Version: Easel 0.1.0
            """)
    }
}
