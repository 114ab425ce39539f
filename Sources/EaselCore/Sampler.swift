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
