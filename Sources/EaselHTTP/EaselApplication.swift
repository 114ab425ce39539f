import EaselCore
import EaselRunners
import EaselStore
import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import ServiceLifecycle

/// Builds the server: the job store, the engine and the scheduler, the routes, and the
/// services that start and stop with it.
public func buildApplication(settings: Settings, logger: Logger) throws -> some ApplicationProtocol {
    let store = try SQLiteJobStore(folder: settings.dataURL.appendingPathComponent("store"))
    let parameters = GenerationParameters(store: store, limits: settings.limits)
    let engine = Engine(settings: settings, parameters: parameters, logger: logger)
    let scheduler = JobScheduler(
        store: store, generator: engine,
        configuration: .init(
            maxQueued: settings.maxQueue, previewEvery: settings.previewEvery,
            retentionMaxAge: settings.retentionDays * 86400, retentionMaxBytes: settings.retentionMaxBytes
        ),
        logger: logger
    )

    let router = Router(context: EaselRequestContext.self)
    router.add(middleware: ErrorMiddleware())
    HealthController(engine: engine).addRoutes(to: router)
    ModelsController(engine: engine, maxBodyBytes: settings.maxBodyBytes).addRoutes(to: router)
    ParametersController(parameters: parameters, maxBodyBytes: settings.maxBodyBytes).addRoutes(to: router)
    CapabilitiesController(engine: engine).addRoutes(to: router)
    GenerationController(engine: engine, scheduler: scheduler, settings: settings).addRoutes(to: router)
    JobsController(engine: engine, scheduler: scheduler, converter: engine.imageConverter, settings: settings)
        .addRoutes(to: router)
    let dialects = DialectState(engine: engine, scheduler: scheduler)
    A1111Controller(engine: engine, scheduler: scheduler, settings: settings, state: dialects).addRoutes(to: router)
    OpenAIImagesController(engine: engine, scheduler: scheduler, settings: settings, converter: engine.imageConverter).addRoutes(to: router)
    SDCppController(engine: engine, scheduler: scheduler, settings: settings).addRoutes(to: router)
    let webSockets = WebSocketController(scheduler: scheduler)
    webSockets.addHTTPRoutes(to: router)
    let webSocketRouter = Router(context: EaselWebSocketContext.self)
    webSockets.addRoutes(to: webSocketRouter)

    let notifier = WebhookNotifier(
        scheduler: scheduler, secret: try WebhookNotifier.secret(settings: settings), attempts: settings.webhookAttempts,
        shutdownGrace: .seconds(min(settings.shutdownGrace, 10)), logger: logger
    )

    return Application(
        router: router,
        server: .http1WebSocketUpgrade(
            webSocketRouter: webSocketRouter,
            configuration: .init(ws: .init(maxFrameSize: 1 << 20))
        ),
        configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "Easel/\(EaselVersion.current)"),
        // Shutdown runs in reverse: the scheduler drains first, so the notifier still
        // sees the jobs that finish while it drains.
        services: [engine, notifier, dialects, SchedulerService(scheduler: scheduler, grace: .seconds(settings.shutdownGrace), logger: logger)],
        onServerRunning: { channel in
            logger.notice("listening on http://\(settings.host):\(channel.localAddress?.port ?? settings.port)")
        },
        logger: logger
    )
}

/// Runs the queue for the server's lifetime: restores unfinished jobs at start, and at
/// shutdown stops taking work and lets running jobs finish within the grace period.
struct SchedulerService: Service {
    let scheduler: JobScheduler
    let grace: Duration
    let logger: Logger

    func run() async throws {
        do {
            try await scheduler.restore()
        } catch {
            logger.error("cannot restore queued jobs: \(error)")
        }
        try? await gracefulShutdown()
        await scheduler.drain(grace: grace)
    }
}
