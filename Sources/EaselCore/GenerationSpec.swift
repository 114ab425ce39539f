/// A validated generation: every value resolved, checked against the limits and ready
/// for an engine.
public struct GenerationSpec: Sendable, Equatable, Codable {
    public var modelID: String
    public var prompt: String
    public var negativePrompt: String
    public var width: Int
    public var height: Int
    public var steps: Int
    public var cfgScale: Double
    public var sampler: String
    /// One seed per image; image `i` uses `seeds[i]`.
    public var seeds: [UInt64]
    public var outputFormat: ImageFormat
    public var quality: Int

    public var batchSize: Int { seeds.count }

    public init(
        modelID: String, prompt: String, negativePrompt: String, width: Int, height: Int, steps: Int,
        cfgScale: Double, sampler: String, seeds: [UInt64], outputFormat: ImageFormat, quality: Int
    ) {
        self.modelID = modelID
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.width = width
        self.height = height
        self.steps = steps
        self.cfgScale = cfgScale
        self.sampler = sampler
        self.seeds = seeds
        self.outputFormat = outputFormat
        self.quality = quality
    }
}

/// The values a request gets for the fields it leaves out.
public struct GenerationDefaults: Sendable, Equatable {
    public var width = 512
    public var height = 512
    public var steps = 20
    public var cfgScale = 7.0
    public var sampler = Sampler.defaultName
    public var negativePrompt = ""
    public var outputFormat = ImageFormat.png
    public var quality = 90

    public init() {}
}

extension GenerationRequest {
    /// The largest seed a request may give; AUTOMATIC1111 seeds are 32-bit as well.
    public static let maxSeed: Int64 = 4_294_967_295

    /// Checks every field against `limits`, fills in `defaults`, and draws a seed when
    /// the request asks for a random one (`seed` -1 or absent). Errors say the fix.
    public func validated(
        modelID: String,
        limits: Limits,
        defaults: GenerationDefaults = GenerationDefaults(),
        randomSeed: () -> UInt64 = { UInt64.random(in: 0...UInt64(GenerationRequest.maxSeed)) }
    ) throws -> GenerationSpec {
        let prompt = self.prompt ?? ""
        let negativePrompt = self.negativePrompt ?? defaults.negativePrompt
        for (field, text) in [("prompt", prompt), ("negative_prompt", negativePrompt)]
        where text.count > limits.maxPromptLength {
            throw EaselError.invalid(field, "is \(text.count) characters long; the limit is \(limits.maxPromptLength)")
        }
        let width = try Self.checkSide("width", self.width ?? defaults.width, max: limits.maxWidth)
        let height = try Self.checkSide("height", self.height ?? defaults.height, max: limits.maxHeight)
        guard width * height <= limits.maxPixels else {
            throw EaselError.invalid(
                "width", "× height is \(width * height) pixels; the limit is \(limits.maxPixels), so lower width or height"
            )
        }
        let steps = self.steps ?? defaults.steps
        guard (1...limits.maxSteps).contains(steps) else {
            throw EaselError.invalid("steps", "must be between 1 and \(limits.maxSteps), not \(steps)")
        }
        let cfgScale = self.cfgScale ?? defaults.cfgScale
        guard cfgScale.isFinite, (0...30).contains(cfgScale) else {
            throw EaselError.invalid("cfg_scale", "must be between 0 and 30, not \(cfgScale)")
        }
        let samplerName = self.sampler ?? defaults.sampler
        guard let sampler = Sampler.named(samplerName) else {
            throw EaselError.invalid(
                "sampler", "'\(samplerName)' is not known; choose one of: \(Sampler.all.map(\.name).joined(separator: ", "))"
            )
        }
        let batchSize = self.batchSize ?? 1
        guard (1...limits.maxBatch).contains(batchSize) else {
            throw EaselError.invalid("batch_size", "must be between 1 and \(limits.maxBatch), not \(batchSize)")
        }
        let seed = self.seed ?? -1
        guard (-1...Self.maxSeed).contains(seed) else {
            throw EaselError.invalid("seed", "must be -1 (random) or between 0 and \(Self.maxSeed), not \(seed)")
        }
        let firstSeed = seed == -1 ? randomSeed() : UInt64(seed)
        let formatName = self.outputFormat ?? defaults.outputFormat.rawValue
        guard let outputFormat = ImageFormat(name: formatName) else {
            throw EaselError.invalid("output_format", "must be png, jpeg or webp, not '\(formatName)'")
        }
        let quality = self.quality ?? defaults.quality
        guard (1...100).contains(quality) else {
            throw EaselError.invalid("quality", "must be between 1 and 100, not \(quality)")
        }
        return GenerationSpec(
            modelID: modelID, prompt: prompt, negativePrompt: negativePrompt, width: width, height: height,
            steps: steps, cfgScale: cfgScale, sampler: sampler.name,
            seeds: (0..<UInt64(batchSize)).map { firstSeed + $0 },
            outputFormat: outputFormat, quality: quality
        )
    }

    private static func checkSide(_ field: String, _ value: Int, max: Int) throws -> Int {
        guard (64...max).contains(value) else {
            throw EaselError.invalid(field, "must be between 64 and \(max), not \(value)")
        }
        guard value % 8 == 0 else {
            throw EaselError.invalid(field, "must be a multiple of 8 (the latent space is 8× smaller); \(value) is not, try \(value / 8 * 8)")
        }
        return value
    }
}

extension GenerationSpec {
    /// AUTOMATIC1111's "infotext" for image `index`: the text its PNG `parameters` chunk
    /// holds, which other tools read back.
    public func infotext(forImage index: Int, version: String) -> String {
        var lines = [prompt]
        if !negativePrompt.isEmpty { lines.append("Negative prompt: \(negativePrompt)") }
        let cfg = cfgScale == cfgScale.rounded() ? String(Int(cfgScale)) : String(cfgScale)
        lines.append(
            "Steps: \(steps), Sampler: \(sampler), CFG scale: \(cfg), Seed: \(seeds[index]), "
                + "Size: \(width)x\(height), Model: \(modelID), Version: Easel \(version)"
        )
        return lines.joined(separator: "\n")
    }
}
