import EaselCore
import EaselRunners
import Hummingbird

/// `GET /health`: 200 once a model can be served, 503 with the reason before.
struct HealthController<Context: RequestContext> {
    let engine: Engine

    struct Health: Encodable {
        let status: String
        let reason: String?
        let version: String
    }

    func addRoutes(to router: Router<Context>) {
        router.get("/health", use: health)
    }

    @Sendable func health(_ request: Request, context: Context) async throws -> Response {
        switch await engine.readiness {
        case .ready:
            return JSONResponse.make(Health(status: "ok", reason: nil, version: EaselVersion.current))
        case .starting(let reason):
            var response = JSONResponse.make(Health(status: "starting", reason: reason, version: EaselVersion.current), status: .serviceUnavailable)
            response.headers[.retryAfter] = "5"
            return response
        case .failed(let reason):
            return JSONResponse.make(Health(status: "failed", reason: reason, version: EaselVersion.current), status: .serviceUnavailable)
        }
    }
}
