import Foundation

/// The body of a native generation request as the client sent it: every field is
/// optional and falls back to the named preset, then to the server's defaults.
public struct GenerationRequest: Codable, Sendable, Equatable {
    public var prompt: String?
    public var negativePrompt: String?
    public var width: Int?
    public var height: Int?
    public var steps: Int?
    public var cfgScale: Double?
    public var sampler: String?
    public var scheduler: String?
    public var seed: Int64?
    public var batchSize: Int?
    public var model: String?
    public var preset: String?
    public var outputFormat: String?
    public var quality: Int?
    public var loras: [LoraRequest]?
    /// Base64 (or a data URL) of a PNG, JPEG or WebP image: makes this an img2img request.
    public var initImage: String?
    public var denoisingStrength: Double?
    public var resizeMode: String?
    /// Base64 of the inpainting mask (white is repainted); needs `init_image`.
    public var mask: String?
    public var maskBlur: Int?
    public var invertMask: Bool?
    public var inpaintFullRes: Bool?
    public var inpaintFullResPadding: Int?
    public var hires: HiresRequest?
    /// The engine to generate with (`diffusers`, `stable-diffusion.cpp`); absent: the model's.
    public var engine: String?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case prompt
        case negativePrompt = "negative_prompt"
        case width, height, steps
        case cfgScale = "cfg_scale"
        case sampler, scheduler, seed
        case batchSize = "batch_size"
        case model, preset
        case outputFormat = "output_format"
        case quality, loras
        case initImage = "init_image"
        case denoisingStrength = "denoising_strength"
        case resizeMode = "resize_mode"
        case mask
        case maskBlur = "mask_blur"
        case invertMask = "invert_mask"
        case inpaintFullRes = "inpaint_full_res"
        case inpaintFullResPadding = "inpaint_full_res_padding"
        case hires, engine
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

    /// This request with every field it leaves out taken from `base` (a preset).
    public func overlaid(on base: GenerationRequest) -> GenerationRequest {
        func object(_ request: GenerationRequest) -> [String: Any] {
            let data = (try? JSONEncoder().encode(request)) ?? Data("{}".utf8)
            return ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any]) ?? [:]
        }
        let merged = object(base).merging(object(self)) { _, own in own }
        guard let data = try? JSONSerialization.data(withJSONObject: merged),
            let request = try? JSONDecoder().decode(GenerationRequest.self, from: data)
        else { return self }
        return request
    }
}

/// A LoRA to apply to one request: a file of the LoRA folder, by name, and its strength.
public struct LoraRequest: Codable, Sendable, Equatable {
    public var name: String
    public var weight: Double?

    public init(name: String, weight: Double? = nil) {
        self.name = name
        self.weight = weight
    }
}

/// The hires fix: generate at the request's size, upscale, then refine in a second pass.
public struct HiresRequest: Codable, Sendable, Equatable {
    /// Factor applied to width and height; ignored when `width` and `height` are given.
    public var scale: Double?
    public var width: Int?
    public var height: Int?
    public var upscaler: String?
    /// Steps of the second pass; 0 or absent means as many as the first.
    public var steps: Int?
    public var denoisingStrength: Double?

    enum CodingKeys: String, CodingKey {
        case scale, width, height, upscaler, steps
        case denoisingStrength = "denoising_strength"
    }

    public init(
        scale: Double? = nil, width: Int? = nil, height: Int? = nil, upscaler: String? = nil, steps: Int? = nil,
        denoisingStrength: Double? = nil
    ) {
        self.scale = scale
        self.width = width
        self.height = height
        self.upscaler = upscaler
        self.steps = steps
        self.denoisingStrength = denoisingStrength
    }
}
