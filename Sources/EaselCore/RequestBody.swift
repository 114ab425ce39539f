import Foundation

/// Decodes JSON request bodies, turning every way one can be wrong into an
/// ``EaselError`` that names the field: not JSON, not an object, an unknown field (a
/// typo would otherwise be ignored silently), a wrong type.
public enum RequestBody {
    public static func decode<Value: Decodable>(_ type: Value.Type, from body: Data, knownFields: [String]) throws -> Value {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: body)
        } catch {
            throw EaselError(.invalidJSON, "the body is not valid JSON; send a JSON object such as {\"prompt\": \"a cat\"}")
        }
        guard let fields = object as? [String: Any] else {
            throw EaselError(.invalidJSON, "the body must be a JSON object such as {\"prompt\": \"a cat\"}")
        }
        let known = Set(knownFields)
        if let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) {
            throw EaselError(
                .unknownField, "unknown field '\(unknown)'; known fields: \(knownFields.joined(separator: ", "))", field: unknown
            )
        }
        do {
            return try JSONDecoder().decode(Value.self, from: body)
        } catch let error as EaselError {
            throw error
        } catch let DecodingError.typeMismatch(type, context) {
            throw mismatch(type: type, field: context.codingPath.first?.stringValue)
        } catch let DecodingError.dataCorrupted(context) {
            throw mismatch(type: nil, field: context.codingPath.first?.stringValue ?? culprit(Value.self, in: fields))
        } catch let DecodingError.valueNotFound(type, context) {
            throw mismatch(type: type, field: context.codingPath.first?.stringValue)
        } catch {
            throw EaselError(.invalidJSON, "the body could not be read: \(error)")
        }
    }

    /// The field that fails to decode on its own. swift-foundation reports a number that
    /// does not fit its field (`"steps": 10.5`) with an empty coding path.
    private static func culprit<Value: Decodable>(_ type: Value.Type, in fields: [String: Any]) -> String? {
        fields.keys.sorted().first { key in
            guard let single = try? JSONSerialization.data(withJSONObject: [key: fields[key]!]) else { return true }
            return (try? JSONDecoder().decode(Value.self, from: single)) == nil
        }
    }

    private static func mismatch(type: Any.Type?, field: String?) -> EaselError {
        let expected: String = switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "an integer"
        case is Double.Type: "a number"
        case is [String].Type: "a list of strings"
        case is [Int].Type, is [Int64].Type: "a list of integers"
        case is [Double].Type: "a list of numbers"
        default: "a value of the right type"
        }
        return EaselError.invalid(field ?? "body", "must be \(expected)")
    }
}
