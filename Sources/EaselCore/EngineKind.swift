/// The engines a runner can serve a model with, by the names requests and listings use.
public enum EngineKind: String, Sendable, Codable, CaseIterable {
    case diffusers
    /// stable-diffusion.cpp through stable-diffusion-cpp-python: GGUF and quantized weights.
    case stableDiffusionCpp = "stable-diffusion.cpp"

    /// The model formats the engine loads.
    public var formats: [ModelEntry.Format] {
        switch self {
        case .diffusers: [.diffusers, .singleFile]
        case .stableDiffusionCpp: [.singleFile, .gguf]
        }
    }

    /// The runner's requirements file of an engine installed only on request
    /// (`--install-engine`); nil for diffusers, which the runner always has.
    public var optionalRequirements: String? {
        switch self {
        case .diffusers: nil
        case .stableDiffusionCpp: "requirements-sdcpp.txt"
        }
    }

    /// Weight types a model may be loaded with; `auto` is the engine's own choice
    /// (diffusers: float16 on CUDA, float32 on CPU; stable-diffusion.cpp: the file's types).
    public var weightTypes: [String] {
        switch self {
        case .diffusers: ["auto", "f32", "f16"]
        case .stableDiffusionCpp:
            ["auto", "f32", "f16", "bf16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1", "q6_k", "q5_k", "q4_k", "q3_k", "q2_k"]
        }
    }

    /// The engine of this name, or the error a client should see for `field`.
    public static func named(_ name: String, field: String) throws -> EngineKind {
        guard let kind = EngineKind(rawValue: name.lowercased()) else {
            throw EaselError.invalid(field, "'\(name)' is not an engine; choose one of: \(allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return kind
    }

    /// The engine `.safetensors` and `.ckpt` checkpoints get when `--default-engine` is
    /// `auto`. On a 2-core x86 CPU, diffusers fp32 is faster per step than
    /// stable-diffusion.cpp q8_0 (docs/benchmarks.md), and on CUDA diffusers runs
    /// float16 kernels, so diffusers is the default everywhere measured so far.
    public static let platformDefault = EngineKind.diffusers
}

/// How a model is loaded: the engine and its load-time options.
public struct LoadOptions: Sendable, Equatable, Codable {
    public var engine: EngineKind
    /// One of `engine.weightTypes`.
    public var weightType: String
    /// Decode the VAE in tiles (stable-diffusion.cpp): less memory for large images.
    public var vaeTiling: Bool

    public init(engine: EngineKind, weightType: String = "auto", vaeTiling: Bool = false) {
        self.engine = engine
        self.weightType = weightType
        self.vaeTiling = vaeTiling
    }

    enum CodingKeys: String, CodingKey {
        case engine
        case weightType = "weight_type"
        case vaeTiling = "vae_tiling"
    }

    /// These options, checked against what their engine can do with `entry`.
    public func checked(for entry: ModelEntry) throws -> LoadOptions {
        guard engine.formats.contains(entry.format) else {
            let servers = EngineKind.allCases.filter { $0.formats.contains(entry.format) }.map(\.rawValue)
            throw EaselError.invalid(
                "engine", "\(engine.rawValue) cannot load model '\(entry.id)' (\(entry.format.rawValue)); use \(servers.joined(separator: " or "))"
            )
        }
        guard engine.weightTypes.contains(weightType) else {
            throw EaselError.invalid(
                "weight_type", "'\(weightType)' is not a weight type of \(engine.rawValue); choose one of: \(engine.weightTypes.joined(separator: ", "))"
            )
        }
        return self
    }
}
