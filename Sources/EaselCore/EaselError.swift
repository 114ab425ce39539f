/// Every failure a client can see: a stable machine-readable code, a message that says
/// what to change, and the request field at fault when there is one.
public struct EaselError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable, Codable {
        case invalidJSON = "invalid_json"
        case invalidField = "invalid_field"
        case unknownField = "unknown_field"
        case bodyTooLarge = "body_too_large"
        case notFound = "not_found"
        case methodNotAllowed = "method_not_allowed"
        case modelNotFound = "model_not_found"
        case jobNotFound = "job_not_found"
        case imageNotFound = "image_not_found"
        case presetNotFound = "preset_not_found"
        case loraNotFound = "lora_not_found"
        case modelBusy = "model_busy"
        case overMemoryBudget = "over_memory_budget"
        case queueFull = "queue_full"
        case upgradeRequired = "upgrade_required"
        case shuttingDown = "shutting_down"
        case notAcceptable = "not_acceptable"
        case unsupportedModel = "unsupported_model"
        case modelLoadFailed = "model_load_failed"
        case cancelled = "cancelled"
        case notReady = "not_ready"
        case runnerSetupFailed = "runner_setup_failed"
        case engineUnavailable = "engine_unavailable"
        case outOfMemory = "out_of_memory"
        case runnerCrashed = "runner_crashed"
        case runnerProtocolError = "runner_protocol_error"
        case runnerTimeout = "runner_timeout"
        case engineError = "engine_error"
        case internalError = "internal_error"
        case unauthorized = "unauthorized"
        case originNotAllowed = "origin_not_allowed"
        case rateLimited = "rate_limited"
        case requestTimeout = "request_timeout"

        /// The one table from error code to HTTP status.
        public var httpStatus: Int {
            switch self {
            case .invalidJSON: 400
            case .unauthorized: 401
            case .originNotAllowed: 403
            case .notFound, .modelNotFound, .jobNotFound, .imageNotFound, .presetNotFound, .loraNotFound: 404
            case .methodNotAllowed: 405
            case .notAcceptable: 406
            case .cancelled, .modelBusy: 409
            case .bodyTooLarge: 413
            case .invalidField, .unknownField, .unsupportedModel, .modelLoadFailed: 422
            case .upgradeRequired: 426
            case .queueFull, .rateLimited: 429
            case .engineError, .internalError: 500
            case .runnerCrashed, .runnerProtocolError: 502
            case .notReady, .runnerSetupFailed, .engineUnavailable, .outOfMemory, .overMemoryBudget, .shuttingDown: 503
            case .runnerTimeout, .requestTimeout: 504
            }
        }
    }

    public let code: Code
    public let message: String
    public let field: String?

    public init(_ code: Code, _ message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }

    public var httpStatus: Int { code.httpStatus }

    public var description: String {
        field.map { "\(code.rawValue) (\($0)): \(message)" } ?? "\(code.rawValue): \(message)"
    }

    public static func invalid(_ field: String, _ message: String) -> EaselError {
        EaselError(.invalidField, "\(field) \(message)", field: field)
    }
}
