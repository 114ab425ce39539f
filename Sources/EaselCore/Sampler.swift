/// The samplers a request may name, by the names AUTOMATIC1111 users know. The runner
/// maps each name to an engine scheduler; its `hello` lists the names it serves.
public struct Sampler: Sendable, Equatable, Codable {
    public let name: String
    public let aliases: [String]

    public static let all: [Sampler] = [
        Sampler(name: "Euler", aliases: ["euler", "k_euler"]),
        Sampler(name: "Euler a", aliases: ["euler_a", "euler_ancestral", "k_euler_a"]),
        Sampler(name: "DPM++ 2M", aliases: ["dpmpp_2m", "k_dpmpp_2m"]),
        Sampler(name: "DPM++ 2M Karras", aliases: ["dpmpp_2m_karras", "k_dpmpp_2m_karras"]),
        Sampler(name: "DPM++ 2M SDE", aliases: ["dpmpp_2m_sde", "k_dpmpp_2m_sde"]),
        Sampler(name: "DDIM", aliases: ["ddim"]),
        Sampler(name: "PNDM", aliases: ["pndm", "plms"]),
        Sampler(name: "LMS", aliases: ["lms", "k_lms"]),
        Sampler(name: "LMS Karras", aliases: ["lms_karras", "k_lms_karras"]),
        Sampler(name: "Heun", aliases: ["heun", "k_heun"]),
        Sampler(name: "DPM2", aliases: ["dpm2", "k_dpm_2"]),
        Sampler(name: "DPM2 a", aliases: ["dpm2_a", "k_dpm_2_a"]),
        Sampler(name: "UniPC", aliases: ["unipc"]),
        Sampler(name: "DEIS", aliases: ["deis"]),
    ]

    public static let defaultName = "Euler a"

    /// The sampler a name or alias refers to, ignoring case.
    public static func named(_ name: String) -> Sampler? {
        let wanted = name.lowercased()
        return all.first { $0.name.lowercased() == wanted || $0.aliases.contains(wanted) }
    }
}

/// Encodings a generated image can be returned in.
public enum ImageFormat: String, Sendable, Codable, CaseIterable {
    case png, jpeg, webp

    public var mediaType: String { "image/\(rawValue)" }

    public init?(mediaType: String) {
        switch mediaType.lowercased() {
        case "image/png": self = .png
        case "image/jpeg", "image/jpg": self = .jpeg
        case "image/webp": self = .webp
        default: return nil
        }
    }

    public init?(name: String) {
        self.init(rawValue: name.lowercased() == "jpg" ? "jpeg" : name.lowercased())
    }
}

/// Noise schedules, by the names AUTOMATIC1111 1.9+ lists as "Schedule type".
/// `automatic` keeps the sampler's own; a sampler whose name ends in "Karras" already
/// implies `karras`.
public struct Scheduler: Sendable, Equatable, Codable {
    public let name: String
    public let label: String

    public static let all: [Scheduler] = [
        Scheduler(name: "automatic", label: "Automatic"),
        Scheduler(name: "karras", label: "Karras"),
        Scheduler(name: "exponential", label: "Exponential"),
        Scheduler(name: "sgm_uniform", label: "SGM Uniform"),
    ]

    public static let defaultName = "automatic"

    /// The scheduler a name or label refers to, ignoring case.
    public static func named(_ name: String) -> Scheduler? {
        let wanted = name.lowercased()
        return all.first { $0.name == wanted || $0.label.lowercased() == wanted }
    }
}

/// How the hires fix enlarges the first pass: in latent space, or as an image.
public enum Upscaler {
    public static let all = ["Latent", "Latent (nearest)", "Latent (bicubic)", "Latent (antialiased)", "Lanczos", "Nearest"]
    public static let defaultName = "Latent"

    public static func named(_ name: String) -> String? {
        all.first { $0.lowercased() == name.lowercased() }
    }
}

/// How an init image of another shape is fitted to the requested size
/// (AUTOMATIC1111's resize modes 0, 1 and 2).
public enum ResizeMode: String, Sendable, Codable, CaseIterable {
    /// Stretch to the size.
    case resize
    /// Keep the aspect ratio and crop what overflows.
    case crop
    /// Keep the aspect ratio and fill the rest by stretching the edges.
    case fill
}
