import Foundation

/// The body of a native text-to-image request as the client sent it: every field is
/// optional and falls back to the server's defaults.
public struct GenerationRequest: Decodable, Sendable, Equatable {
    public var prompt: String?
    public var negativePrompt: String?
    public var width: Int?
    public var height: Int?
    public var steps: Int?
    public var cfgScale: Double?
    public var sampler: String?
    public var seed: Int64?
    public var batchSize: Int?
    public var model: String?
    public var outputFormat: String?
    public var quality: Int?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case prompt
        case negativePrompt = "negative_prompt"
        case width, height, steps
        case cfgScale = "cfg_scale"
        case sampler, seed
        case batchSize = "batch_size"
        case model
        case outputFormat = "output_format"
        case quality
    }

    public init(
        prompt: String? = nil, negativePrompt: String? = nil, width: Int? = nil, height: Int? = nil,
        steps: Int? = nil, cfgScale: Double? = nil, sampler: String? = nil, seed: Int64? = nil,
        batchSize: Int? = nil, model: String? = nil, outputFormat: String? = nil, quality: Int? = nil
    ) {
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.width = width
        self.height = height
        self.steps = steps
        self.cfgScale = cfgScale
        self.sampler = sampler
        self.seed = seed
        self.batchSize = batchSize
        self.model = model
        self.outputFormat = outputFormat
        self.quality = quality
    }

    /// Decodes a request body; errors name the field (see ``RequestBody``).
    public static func decode(from body: Data) throws -> GenerationRequest {
        try RequestBody.decode(GenerationRequest.self, from: body, knownFields: CodingKeys.allCases.map(\.rawValue))
    }
}
