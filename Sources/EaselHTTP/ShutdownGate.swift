import EaselCore
import Hummingbird
import Logging
import ServiceLifecycle

/// Drains the job queue before the HTTP server stops. It runs beside the application,
/// after it in the service group, so a shutdown signal reaches it first: new work gets
/// 503 `shutting_down` (and `GET /ready` 503) while running jobs finish, up to
/// `--shutdown-grace`; jobs still running then are stopped and run again after the next
/// start. Only then does the server stop listening.
public final class ShutdownGate: Service, Sendable {
    private let drainer = LockedValue<(@Sendable () async -> Void)?>(nil)

    public init() {}

    func attach(_ drain: @escaping @Sendable () async -> Void) {
        drainer.withLockedValue { $0 = drain }
    }

    public func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            return  // cancelled, not shut down gracefully
        }
        if let drain = drainer.withLockedValue({ $0 }) { await drain() }
    }
}

extension ApplicationProtocol {
    /// Runs the application like `runService()`, with `gate` draining the queue at
    /// SIGTERM or SIGINT before the server stops.
    public func runService(drainingFirst gate: ShutdownGate) async throws {
        let group = ServiceGroup(
            configuration: .init(services: [self, gate], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await group.run()
    }
}
