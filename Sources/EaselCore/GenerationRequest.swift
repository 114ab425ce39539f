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

    /// Decodes a request body, turning every way it can be wrong into an ``EaselError``
    /// that names the field: not JSON, not an object, an unknown field, a wrong type.
    public static func decode(from body: Data) throws -> GenerationRequest {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: body)
        } catch {
            throw EaselError(.invalidJSON, "the body is not valid JSON; send a JSON object such as {\"prompt\": \"a cat\"}")
        }
        guard let fields = object as? [String: Any] else {
            throw EaselError(.invalidJSON, "the body must be a JSON object such as {\"prompt\": \"a cat\"}")
        }
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        if let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) {
            throw EaselError(
                .unknownField,
                "unknown field '\(unknown)'; known fields: \(CodingKeys.allCases.map(\.rawValue).joined(separator: ", "))",
                field: unknown
            )
        }
        do {
            return try JSONDecoder().decode(GenerationRequest.self, from: body)
        } catch let DecodingError.typeMismatch(type, context) {
            throw mismatch(type: type, path: context.codingPath)
        } catch let DecodingError.dataCorrupted(context) {
            throw mismatch(type: nil, path: context.codingPath.isEmpty ? culprit(in: fields) : context.codingPath)
        } catch {
            throw EaselError(.invalidJSON, "the body could not be read: \(error)")
        }
    }

    /// The field that fails to decode on its own. swift-foundation reports a number that
    /// does not fit its field (`"steps": 10.5`) with an empty coding path.
    private static func culprit(in fields: [String: Any]) -> [CodingKey] {
        let key = fields.keys.sorted().first { key in
            guard let single = try? JSONSerialization.data(withJSONObject: [key: fields[key]!]) else { return true }
            return (try? JSONDecoder().decode(GenerationRequest.self, from: single)) == nil
        }
        return key.flatMap(CodingKeys.init(rawValue:)).map { [$0] } ?? []
    }

    private static func mismatch(type: Any.Type?, path: [CodingKey]) -> EaselError {
        let field = path.first?.stringValue ?? "body"
        let expected: String = switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "an integer"
        case is Double.Type: "a number"
        default: "a value of the right type"
        }
        return EaselError.invalid(field, "must be \(expected)")
    }
}
