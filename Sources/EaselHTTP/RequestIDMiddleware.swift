import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// Gives every request an id: the client's `X-Request-ID` when it is a sensible token,
/// else a new one. The id goes back in the response's `X-Request-ID`, and into the
/// metadata of the request's logger, so every log line of the request carries it. One
/// access line per request is logged when the response head is ready.
struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Probes and scrapes log at debug, so they do not drown the rest.
    static var quietPaths: Set<String> { ["/health", "/ready", "/metrics"] }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let id = Self.acceptable(request.headers[.requestID]) ?? Self.newID()
        var context = context
        context.logger[metadataKey: "request_id"] = .string(id)
        let start = ContinuousClock.now
        let level: Logger.Level = Self.quietPaths.contains(request.uri.path) ? .debug : .info
        do {
            var response = try await next(request, context)
            response.headers[.requestID] = id
            context.logger.log(
                level: level, "\(request.method) \(request.uri.path) \(response.status.code)",
                metadata: ["duration_ms": .stringConvertible(Self.milliseconds(.now - start))]
            )
            return response
        } catch {
            // Errors become responses inside (ErrorMiddleware); this is the rare rest.
            context.logger.error("\(request.method) \(request.uri.path) failed: \(error)")
            throw error
        }
    }

    /// Visible ASCII without spaces, at most 128 bytes: safe to echo and to log.
    static func acceptable(_ value: String?) -> String? {
        guard let value, !value.isEmpty, value.utf8.count <= 128, value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return nil
        }
        return value
    }

    static func newID() -> String {
        "req_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
    }

    static func milliseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return ((Double(seconds) * 1000 + Double(attoseconds) / 1e15) * 10).rounded() / 10
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-ID")!
}
