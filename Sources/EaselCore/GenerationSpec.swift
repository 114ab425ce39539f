import Foundation

/// A validated generation: every value resolved, checked against the limits and ready
/// for an engine.
public struct GenerationSpec: Sendable, Equatable, Codable {
    /// A LoRA applied to this generation only.
    public struct Lora: Sendable, Equatable, Codable {
        public var name: String
        public var weight: Double

        public init(name: String, weight: Double) {
            self.name = name
            self.weight = weight
        }
    }

    /// The image an img2img or inpainting request starts from.
    public struct InitImage: Sendable, Equatable, Codable {
        public var image: Data
        public var denoisingStrength: Double
        public var resizeMode: ResizeMode
        public var mask: Mask?

        public init(image: Data, denoisingStrength: Double, resizeMode: ResizeMode, mask: Mask? = nil) {
            self.image = image
            self.denoisingStrength = denoisingStrength
            self.resizeMode = resizeMode
            self.mask = mask
        }
    }

    public struct Mask: Sendable, Equatable, Codable {
        public var image: Data
        public var blur: Int
        public var invert: Bool
        /// Inpaint only the masked region, at full resolution, with this much padding.
        public var onlyMasked: Bool
        public var padding: Int

        public init(image: Data, blur: Int, invert: Bool, onlyMasked: Bool, padding: Int) {
            self.image = image
            self.blur = blur
            self.invert = invert
            self.onlyMasked = onlyMasked
            self.padding = padding
        }
    }

    public struct Hires: Sendable, Equatable, Codable {
        public var width: Int
        public var height: Int
        public var upscaler: String
        public var steps: Int
        public var denoisingStrength: Double

        public init(width: Int, height: Int, upscaler: String, steps: Int, denoisingStrength: Double) {
            self.width = width
            self.height = height
            self.upscaler = upscaler
            self.steps = steps
            self.denoisingStrength = denoisingStrength
        }
    }

    public var modelID: String
    public var prompt: String
    public var negativePrompt: String
    public var width: Int
    public var height: Int
    public var steps: Int
    public var cfgScale: Double
    public var sampler: String
    public var scheduler: String
    /// One seed per image; image `i` uses `seeds[i]`.
    public var seeds: [UInt64]
    public var outputFormat: ImageFormat
    public var quality: Int
    public var loras: [Lora]
    public var initImage: InitImage?
    public var hires: Hires?
    /// The engine that generates it; nil in jobs stored before engines could be chosen.
    public var engine: String?

    public var batchSize: Int { seeds.count }
    /// The size of the images the generation returns.
    public var outputWidth: Int { hires?.width ?? width }
    public var outputHeight: Int { hires?.height ?? height }

    public init(
        modelID: String, prompt: String, negativePrompt: String, width: Int, height: Int, steps: Int,
        cfgScale: Double, sampler: String, scheduler: String = Scheduler.defaultName, seeds: [UInt64],
        outputFormat: ImageFormat, quality: Int, loras: [Lora] = [], initImage: InitImage? = nil, hires: Hires? = nil
    ) {
        self.modelID = modelID
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.width = width
        self.height = height
        self.steps = steps
        self.cfgScale = cfgScale
        self.sampler = sampler
        self.scheduler = scheduler
        self.seeds = seeds
        self.outputFormat = outputFormat
        self.quality = quality
        self.loras = loras
        self.initImage = initImage
        self.hires = hires
    }
}

/// The values a request gets for the fields it leaves out. Operators change them at run
/// time (`PATCH /v1/defaults`).
public struct GenerationDefaults: Sendable, Equatable, Codable {
    public var width = 512
    public var height = 512
    public var steps = 20
    public var cfgScale = 7.0
    public var sampler = Sampler.defaultName
    public var scheduler = Scheduler.defaultName
    public var negativePrompt = ""
    public var outputFormat = ImageFormat.png
    public var quality = 90

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case width, height, steps
        case cfgScale = "cfg_scale"
        case sampler, scheduler
        case negativePrompt = "negative_prompt"
        case outputFormat = "output_format"
        case quality
    }

    public init() {}

    /// These defaults with the fields a request sets replacing them, checked with the
    /// rules every request is checked with.
    public func updated(with patch: GenerationRequest, limits: Limits) throws -> GenerationDefaults {
        let spec = try patch.validated(modelID: "defaults", limits: limits, defaults: self)
        var updated = self
        updated.width = spec.width
        updated.height = spec.height
        updated.steps = spec.steps
        updated.cfgScale = spec.cfgScale
        updated.sampler = spec.sampler
        updated.scheduler = spec.scheduler
        updated.negativePrompt = spec.negativePrompt
        updated.outputFormat = spec.outputFormat
        updated.quality = spec.quality
        return updated
    }
}

extension GenerationRequest {
    /// The largest seed a request may give; AUTOMATIC1111 seeds are 32-bit as well.
    public static let maxSeed: Int64 = 4_294_967_295
    public static let loraWeightRange = -4.0...4.0

    /// Checks every field against `limits`, fills in `defaults`, and draws a seed when
    /// the request asks for a random one (`seed` -1 or absent). Errors say the fix.
    public func validated(
        modelID: String,
        limits: Limits,
        defaults: GenerationDefaults = GenerationDefaults(),
        randomSeed: () -> UInt64 = { UInt64.random(in: 0...UInt64(GenerationRequest.maxSeed)) }
    ) throws -> GenerationSpec {
        let (prompt, promptLoras) = try LoraTag.extract(from: self.prompt ?? "")
        let negativePrompt = self.negativePrompt ?? defaults.negativePrompt
        for (field, text) in [("prompt", self.prompt ?? ""), ("negative_prompt", negativePrompt)]
        where text.count > limits.maxPromptLength {
            throw EaselError.invalid(field, "is \(text.count) characters long; the limit is \(limits.maxPromptLength)")
        }
        let width = try Self.checkSide("width", self.width ?? defaults.width, max: limits.maxWidth)
        let height = try Self.checkSide("height", self.height ?? defaults.height, max: limits.maxHeight)
        try Self.checkPixels("width", width, height, limits: limits)
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
        let schedulerName = self.scheduler ?? defaults.scheduler
        guard let scheduler = Scheduler.named(schedulerName) else {
            throw EaselError.invalid(
                "scheduler", "'\(schedulerName)' is not known; choose one of: \(Scheduler.all.map(\.name).joined(separator: ", "))"
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
            steps: steps, cfgScale: cfgScale, sampler: sampler.name, scheduler: scheduler.name,
            seeds: (0..<UInt64(batchSize)).map { firstSeed + $0 },
            outputFormat: outputFormat, quality: quality,
            loras: try validatedLoras(promptLoras), initImage: try validatedInitImage(),
            hires: try validatedHires(width: width, height: height, limits: limits)
        )
    }

    private func validatedLoras(_ fromPrompt: [GenerationSpec.Lora]) throws -> [GenerationSpec.Lora] {
        var loras = fromPrompt
        for (index, lora) in (self.loras ?? []).enumerated() {
            let weight = lora.weight ?? 1
            guard !lora.name.isEmpty else { throw EaselError.invalid("loras[\(index)].name", "must name a LoRA (GET /v1/loras lists them)") }
            guard weight.isFinite, Self.loraWeightRange.contains(weight) else {
                throw EaselError.invalid("loras[\(index)].weight", "must be between \(Self.loraWeightRange.lowerBound) and \(Self.loraWeightRange.upperBound), not \(weight)")
            }
            loras.append(GenerationSpec.Lora(name: lora.name, weight: weight))
        }
        return loras
    }

    private func validatedInitImage() throws -> GenerationSpec.InitImage? {
        guard let initImage else {
            for (field, present) in [
                ("mask", mask != nil), ("denoising_strength", denoisingStrength != nil), ("resize_mode", resizeMode != nil),
            ] where present {
                throw EaselError.invalid(field, "needs init_image: send the image to start from as base64 in init_image")
            }
            return nil
        }
        let strength = denoisingStrength ?? 0.75
        guard strength.isFinite, (0...1).contains(strength) else {
            throw EaselError.invalid("denoising_strength", "must be between 0 and 1, not \(strength)")
        }
        let modeName = resizeMode ?? ResizeMode.resize.rawValue
        guard let mode = ResizeMode(rawValue: modeName.lowercased()) else {
            throw EaselError.invalid("resize_mode", "must be resize, crop or fill, not '\(modeName)'")
        }
        var mask: GenerationSpec.Mask?
        if let maskData = self.mask {
            let blur = maskBlur ?? 4
            guard (0...64).contains(blur) else { throw EaselError.invalid("mask_blur", "must be between 0 and 64 pixels, not \(blur)") }
            let padding = inpaintFullResPadding ?? 32
            guard (0...256).contains(padding) else {
                throw EaselError.invalid("inpaint_full_res_padding", "must be between 0 and 256 pixels, not \(padding)")
            }
            mask = GenerationSpec.Mask(
                image: try EncodedImage.decode(maskData, field: "mask"), blur: blur, invert: invertMask ?? false,
                onlyMasked: inpaintFullRes ?? false, padding: padding
            )
        }
        return GenerationSpec.InitImage(
            image: try EncodedImage.decode(initImage, field: "init_image"), denoisingStrength: strength, resizeMode: mode, mask: mask
        )
    }

    private func validatedHires(width: Int, height: Int, limits: Limits) throws -> GenerationSpec.Hires? {
        guard let hires else { return nil }
        if initImage != nil {
            throw EaselError.invalid("hires", "works with text-to-image only; drop hires or init_image")
        }
        let targetWidth: Int
        let targetHeight: Int
        if hires.width != nil || hires.height != nil {
            targetWidth = hires.width ?? width * (hires.height ?? height) / height
            targetHeight = hires.height ?? height * targetWidth / width
        } else {
            let scale = hires.scale ?? 2
            guard scale.isFinite, (1...4).contains(scale) else {
                throw EaselError.invalid("hires.scale", "must be between 1 and 4, not \(scale)")
            }
            targetWidth = Int((Double(width) * scale / 8).rounded()) * 8
            targetHeight = Int((Double(height) * scale / 8).rounded()) * 8
        }
        let finalWidth = try Self.checkSide("hires.width", targetWidth, max: limits.maxWidth)
        let finalHeight = try Self.checkSide("hires.height", targetHeight, max: limits.maxHeight)
        try Self.checkPixels("hires.width", finalWidth, finalHeight, limits: limits)
        guard finalWidth >= width, finalHeight >= height else {
            throw EaselError.invalid("hires.width", "× hires.height must be at least the first pass's \(width)×\(height); the hires fix enlarges")
        }
        let upscalerName = hires.upscaler ?? Upscaler.defaultName
        guard let upscaler = Upscaler.named(upscalerName) else {
            throw EaselError.invalid("hires.upscaler", "'\(upscalerName)' is not known; choose one of: \(Upscaler.all.joined(separator: ", "))")
        }
        let steps = hires.steps ?? 0
        guard (0...limits.maxSteps).contains(steps) else {
            throw EaselError.invalid("hires.steps", "must be between 0 (as many as the first pass) and \(limits.maxSteps), not \(steps)")
        }
        let strength = hires.denoisingStrength ?? 0.7
        guard strength.isFinite, (0...1).contains(strength) else {
            throw EaselError.invalid("hires.denoising_strength", "must be between 0 and 1, not \(strength)")
        }
        return GenerationSpec.Hires(
            width: finalWidth, height: finalHeight, upscaler: upscaler, steps: steps, denoisingStrength: strength
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

    private static func checkPixels(_ field: String, _ width: Int, _ height: Int, limits: Limits) throws {
        guard width * height <= limits.maxPixels else {
            throw EaselError.invalid(
                field, "× height is \(width * height) pixels; the limit is \(limits.maxPixels), so lower width or height"
            )
        }
    }
}

/// AUTOMATIC1111's prompt syntax for LoRAs: `<lora:name:weight>` anywhere in the prompt.
enum LoraTag {
    static func extract(from prompt: String) throws -> (String, [GenerationSpec.Lora]) {
        let pattern = #/<lora:([^:>]+)(?::([^:>]*))?(?::[^>]*)?>/#
        var loras: [GenerationSpec.Lora] = []
        for match in prompt.matches(of: pattern) {
            let name = String(match.output.1).trimmingCharacters(in: .whitespaces)
            let weightText = match.output.2.map { String($0).trimmingCharacters(in: .whitespaces) } ?? ""
            guard let weight = weightText.isEmpty ? 1 : Double(weightText), weight.isFinite,
                GenerationRequest.loraWeightRange.contains(weight)
            else {
                throw EaselError.invalid("prompt", "LoRA tag '\(match.output.0)' needs a weight between -4 and 4, as in <lora:\(name):0.8>")
            }
            loras.append(GenerationSpec.Lora(name: name, weight: weight))
        }
        let stripped = prompt.replacing(pattern, with: "")
            .replacing(/\ {2,}/, with: " ").trimmingCharacters(in: .whitespaces)
        return (loras.isEmpty ? prompt : stripped, loras)
    }
}

/// Images sent in requests: base64, optionally as a data URL, of a PNG, JPEG or WebP file.
public enum EncodedImage {
    public static func decode(_ text: String, field: String) throws -> Data {
        var payload = Substring(text)
        if payload.hasPrefix("data:"), let comma = payload.firstIndex(of: ",") {
            payload = payload[payload.index(after: comma)...]
        }
        guard let data = Data(base64Encoded: String(payload), options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw EaselError.invalid(field, "must be a base64-encoded PNG, JPEG or WebP image")
        }
        guard format(of: data) != nil else {
            throw EaselError.invalid(field, "is not a PNG, JPEG or WebP image; send one of those, base64-encoded")
        }
        return data
    }

    public static func format(of data: Data) -> ImageFormat? {
        let bytes = [UInt8](data.prefix(12))
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return .png }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if bytes.count == 12, bytes.starts(with: Array("RIFF".utf8)), Array(bytes[8..<12]) == Array("WEBP".utf8) { return .webp }
        return nil
    }
}

extension GenerationSpec {
    /// AUTOMATIC1111's "infotext" for image `index`: the text its PNG `parameters` chunk
    /// holds, which other tools read back.
    public func infotext(forImage index: Int, version: String) -> String {
        func number(_ value: Double) -> String { value == value.rounded() ? String(Int(value)) : String(value) }
        let tags = loras.map { "<lora:\($0.name):\(number($0.weight))>" }
        var lines = [([prompt] + tags).filter { !$0.isEmpty }.joined(separator: " ")]
        if !negativePrompt.isEmpty { lines.append("Negative prompt: \(negativePrompt)") }
        var fields = ["Steps: \(steps)", "Sampler: \(sampler)"]
        if scheduler != Scheduler.defaultName, let label = Scheduler.named(scheduler)?.label {
            fields.append("Schedule type: \(label)")
        }
        fields += ["CFG scale: \(number(cfgScale))", "Seed: \(seeds[index])", "Size: \(width)x\(height)", "Model: \(modelID)"]
        if let initImage { fields.append("Denoising strength: \(number(initImage.denoisingStrength))") }
        if let mask = initImage?.mask { fields.append("Mask blur: \(mask.blur)") }
        if let hires {
            fields += [
                "Hires denoising strength: \(number(hires.denoisingStrength))", "Hires resize: \(hires.width)x\(hires.height)",
                "Hires steps: \(hires.steps)", "Hires upscaler: \(hires.upscaler)",
            ]
        }
        fields.append("Version: Easel \(version)")
        lines.append(fields.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}
