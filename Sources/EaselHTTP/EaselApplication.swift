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
public func buildApplication(settings: Settings, logger: Logger, shutdownGate: ShutdownGate? = nil) throws -> some ApplicationProtocol {
    let store = try SQLiteJobStore(folder: settings.dataURL.appendingPathComponent("store"))
    let parameters = GenerationParameters(store: store, limits: settings.limits)
    let engine = Engine(settings: settings, parameters: parameters, logger: logger)
    var schedulerConfiguration = JobScheduler.Configuration(
        maxQueued: settings.maxQueue, previewEvery: settings.previewEvery,
        retentionMaxAge: settings.retentionDays * 86400, retentionMaxBytes: settings.retentionMaxBytes
    )
    schedulerConfiguration.maxQueuedPerClient = settings.maxQueuePerKey
    schedulerConfiguration.runnerCrashRetries = settings.runnerCrashRetries
    let scheduler = JobScheduler(store: store, generator: engine, configuration: schedulerConfiguration, logger: logger)
    let metrics = EaselMetrics()
    let apiKeys = try APIKeys.load(settings)
    if !apiKeys.isEmpty { logger.notice("API keys required: \(apiKeys.count) accepted") }
    shutdownGate?.attach { [grace = settings.shutdownGrace] in
        logger.notice("shutting down: no new jobs; waiting up to \(grace) s for running ones")
        await scheduler.drain(grace: .seconds(grace))
        await scheduler.interruptRunning()
    }

    let router = Router(context: EaselRequestContext.self)
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: HTTPMetricsMiddleware(metrics: metrics))
    router.add(middleware: CORSPolicyMiddleware(settings: settings))
    router.add(middleware: ErrorMiddleware())
    router.add(middleware: AccessMiddleware(keys: apiKeys, settings: settings, address: { $0.clientAddress }))
    if settings.requestTimeout > 0 { router.add(middleware: RequestTimeoutMiddleware(seconds: settings.requestTimeout)) }
    StatusController(engine: engine, scheduler: scheduler, metrics: metrics).addRoutes(to: router)
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
    MCPController(settings: settings).addRoutes(to: router)
    WebController(router: router, logger: logger).addRoutes(to: router)
    let webSocketRouter = Router(context: EaselWebSocketContext.self)
    webSocketRouter.add(middleware: AccessMiddleware(keys: apiKeys, settings: settings, address: { _ in nil }))
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
        services: [
            engine, notifier, dialects, SchedulerService(scheduler: scheduler, grace: .seconds(settings.shutdownGrace), logger: logger),
            JobMetricsService(scheduler: scheduler, metrics: metrics),
        ],
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
