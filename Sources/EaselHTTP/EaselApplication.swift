import EaselCore
import EaselRunners
import Hummingbird
import Logging

/// Builds the HTTP application around an engine: the routes, the error middleware and
/// the engine as a service that starts and stops with the server.
public func buildApplication(settings: Settings, engine: Engine, logger: Logger) -> some ApplicationProtocol {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: ErrorMiddleware())
    HealthController(engine: engine).addRoutes(to: router)
    ModelsController(engine: engine).addRoutes(to: router)
    GenerationController(engine: engine, maxBodyBytes: settings.maxBodyBytes).addRoutes(to: router)
    return Application(
        router: router,
        configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "Easel/\(EaselVersion.current)"),
        services: [engine],
        onServerRunning: { channel in
            logger.notice("listening on http://\(settings.host):\(channel.localAddress?.port ?? settings.port)")
        },
        logger: logger
    )
}
