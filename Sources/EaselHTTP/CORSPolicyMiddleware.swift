import EaselCore
import HTTPTypes
import Hummingbird

/// Cross-origin access for browsers, closed unless `--cors-origin` names origins.
///
/// - A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin
///   gets 204 with the allowed methods and headers; from any other origin, 403
///   `origin_not_allowed`. Preflights carry no credentials, so they need no API key.
/// - Other requests from an allowed origin get `Access-Control-Allow-Origin`; from
///   another, nothing is added and the browser keeps the answer from the page.
/// - `*` is sent only without credentials: with `--cors-allow-credentials` the origin is
///   echoed, and `*` is refused at start-up.
struct CORSPolicyMiddleware<Context: RequestContext>: RouterMiddleware {
    let origins: Set<String>
    let anyOrigin: Bool
    let allowCredentials: Bool

    static var allowedMethods: String { "GET, POST, DELETE, OPTIONS" }
    static var allowedHeaders: String { "Authorization, Content-Type, Accept, X-Request-ID" }
    static var exposedHeaders: String { "X-Request-ID, X-Easel-Seed, X-Easel-Job, Server-Timing, Retry-After, Location" }

    init(settings: Settings) {
        let origins = settings.corsOrigins
        self.anyOrigin = origins.contains("*")
        self.origins = Set(origins.filter { $0 != "*" })
        self.allowCredentials = settings.corsAllowCredentials && !anyOrigin
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin] else { return try await next(request, context) }
        let allowed = anyOrigin || origins.contains(origin)
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            guard allowed else {
                var response = try EaselError(
                    .originNotAllowed, "origin \(origin) may not call this server from a browser (--cors-origin)"
                ).response(from: request, context: context)
                response.headers[.vary] = "Origin"
                return response
            }
            var response = Response(status: .noContent)
            addOriginHeaders(to: &response, origin: origin)
            response.headers[.accessControlAllowMethods] = Self.allowedMethods
            response.headers[.accessControlAllowHeaders] = Self.allowedHeaders
            response.headers[.accessControlMaxAge] = "600"
            return response
        }
        var response = try await next(request, context)
        if allowed {
            addOriginHeaders(to: &response, origin: origin)
            response.headers[.accessControlExposeHeaders] = Self.exposedHeaders
        }
        return response
    }

    private func addOriginHeaders(to response: inout Response, origin: String) {
        if anyOrigin, !allowCredentials {
            response.headers[.accessControlAllowOrigin] = "*"
        } else {
            response.headers[.accessControlAllowOrigin] = origin
            response.headers[.vary] = "Origin"
        }
        if allowCredentials { response.headers[.accessControlAllowCredentials] = "true" }
    }
}
