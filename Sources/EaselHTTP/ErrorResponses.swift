import EaselCore
import Foundation
import Hummingbird
import NIOCore

/// The JSON body of every error: `{"error": {"code", "message", "field"}}`.
struct ErrorBody: Encodable {
    struct Detail: Encodable {
        let code: String
        let message: String
        let field: String?
    }

    let error: Detail
}

extension EaselError: ResponseGenerator {}
extension EaselError: HTTPResponseError {
    public var status: HTTPResponse.Status { HTTPResponse.Status(code: httpStatus) }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = JSONResponse.make(ErrorBody(error: .init(code: code.rawValue, message: message, field: field)), status: status)
        if code == .notReady || code == .queueFull || code == .shuttingDown { response.headers[.retryAfter] = "5" }
        if code == .upgradeRequired { response.headers[.upgrade] = "websocket" }
        if code == .unauthorized { response.headers[.wwwAuthenticate] = #"Bearer realm="easel", Basic realm="easel""# }
        if code == .rateLimited { response.headers[.retryAfter] = "1" }
        return response
    }
}

/// Makes every failure a JSON error: errors the routes throw, and the bare responses
/// the framework gives for unknown routes or oversized bodies.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response: Response
        do {
            response = try await next(request, context)
        } catch {
            return try Self.easelError(for: error, request: request).response(from: request, context: context)
        }
        guard response.status.code >= 400, response.headers[.contentType] == nil else { return response }
        return try Self.easelError(status: response.status, request: request).response(from: request, context: context)
    }

    static func easelError(for error: Error, request: Request) -> EaselError {
        switch error {
        case let error as EaselError: error
        case is NIOTooManyBytesError: easelError(status: .contentTooLarge, request: request)
        case let error as HTTPError: easelError(status: error.status, request: request, detail: error.body)
        default: EaselError(.internalError, "internal error: \(error)")
        }
    }

    static func easelError(status: HTTPResponse.Status, request: Request, detail: String? = nil) -> EaselError {
        switch status {
        case .notFound:
            EaselError(.notFound, "no route \(request.method) \(request.uri.path); see README.md for the API")
        case .contentTooLarge:
            EaselError(.bodyTooLarge, "the request body is larger than the server's limit (--max-body-bytes)")
        case .methodNotAllowed:
            EaselError(.methodNotAllowed, "\(request.method) is not allowed on \(request.uri.path)")
        case .badRequest:
            EaselError(.invalidJSON, detail ?? "the request is malformed")
        default:
            EaselError(.internalError, detail ?? "HTTP \(status.code)")
        }
    }
}

enum JSONResponse {
    static func data(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return (try? encoder.encode(value)) ?? Data(#"{"error":{"code":"internal_error","message":"response encoding failed"}}"#.utf8)
    }

    /// One line of JSON.
    static func encode(_ value: some Encodable) -> String {
        String(decoding: data(value), as: UTF8.self)
    }

    static func make(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let data = data(value)
        return Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}
