import Foundation

/// The body of `POST /v1/jobs`: a generation request plus how to queue it, and
/// optionally a grid of variations that becomes one job per combination.
public struct JobRequest: Decodable, Sendable {
    /// Lists of values to combine; each combination becomes one job of the batch.
    public struct Variations: Decodable, Sendable, Equatable {
        public var prompt: [String]?
        public var seed: [Int64]?
        public var steps: [Int]?
        public var cfgScale: [Double]?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case prompt, seed, steps
            case cfgScale = "cfg_scale"
        }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: AnyKey.self)
            let known = CodingKeys.allCases.map(\.rawValue)
            if let unknown = container.allKeys.map(\.stringValue).sorted().first(where: { !known.contains($0) }) {
                throw EaselError(
                    .unknownField, "unknown variation '\(unknown)'; vary one of: \(known.joined(separator: ", "))",
                    field: "variations.\(unknown)"
                )
            }
            let values = try decoder.container(keyedBy: CodingKeys.self)
            prompt = try values.decodeIfPresent([String].self, forKey: .prompt)
            seed = try values.decodeIfPresent([Int64].self, forKey: .seed)
            steps = try values.decodeIfPresent([Int].self, forKey: .steps)
            cfgScale = try values.decodeIfPresent([Double].self, forKey: .cfgScale)
        }
    }

    public var generation: GenerationRequest
    public var priority: Int?
    public var webhook: String?
    public var variations: Variations?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case priority, webhook, variations
    }

    public static let priorityRange = -100...100

    public init(from decoder: Decoder) throws {
        generation = try GenerationRequest(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        priority = try container.decodeIfPresent(Int.self, forKey: .priority)
        webhook = try container.decodeIfPresent(String.self, forKey: .webhook)
        variations = try container.decodeIfPresent(Variations.self, forKey: .variations)
    }

    public static func decode(from body: Data) throws -> JobRequest {
        try RequestBody.decode(
            JobRequest.self, from: body,
            knownFields: GenerationRequest.CodingKeys.allCases.map(\.rawValue) + CodingKeys.allCases.map(\.rawValue)
        )
    }

    /// Checks the queueing fields.
    public func validatedPriority() throws -> Int {
        let priority = self.priority ?? 0
        guard Self.priorityRange.contains(priority) else {
            throw EaselError.invalid("priority", "must be between \(Self.priorityRange.lowerBound) and \(Self.priorityRange.upperBound), not \(priority)")
        }
        return priority
    }

    public func validatedWebhook() throws -> String? {
        guard let webhook else { return nil }
        guard let url = URL(string: webhook), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil else {
            throw EaselError.invalid("webhook", "must be an absolute http or https URL, not '\(webhook)'")
        }
        return webhook
    }

    /// The generation requests this job request stands for: itself, or one per
    /// combination of the variations (at most `maxJobs`).
    public func expanded(maxJobs: Int) throws -> [GenerationRequest] {
        guard let variations else { return [generation] }
        let lists: [(String, Int)] = [
            ("prompt", variations.prompt?.count ?? 1), ("seed", variations.seed?.count ?? 1),
            ("steps", variations.steps?.count ?? 1), ("cfg_scale", variations.cfgScale?.count ?? 1),
        ]
        if let empty = lists.first(where: { $0.1 == 0 }) {
            throw EaselError.invalid("variations.\(empty.0)", "must list at least one value")
        }
        let count = lists.reduce(1) { $0 * $1.1 }
        guard count <= maxJobs else {
            throw EaselError.invalid("variations", "make \(count) jobs; at most \(maxJobs) fit in the queue")
        }
        var requests: [GenerationRequest] = []
        for prompt in variations.prompt ?? [generation.prompt ?? ""] {
            for seed in variations.seed.map({ $0.map(Optional.some) }) ?? [generation.seed] {
                for steps in variations.steps.map({ $0.map(Optional.some) }) ?? [generation.steps] {
                    for cfgScale in variations.cfgScale.map({ $0.map(Optional.some) }) ?? [generation.cfgScale] {
                        var request = generation
                        request.prompt = prompt
                        request.seed = seed
                        request.steps = steps
                        request.cfgScale = cfgScale
                        requests.append(request)
                    }
                }
            }
        }
        return requests
    }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
