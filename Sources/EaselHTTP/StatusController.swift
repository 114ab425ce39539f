import EaselCore
import EaselRunners
import Foundation
import Hummingbird
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Monitoring: `GET /v1/status` (the whole picture, as JSON), `GET /ready` (whether a
/// model can be served now) and `GET /metrics` (Prometheus text format).
struct StatusController<Context: RequestContext> {
    let engine: Engine
    let scheduler: JobScheduler
    let metrics: EaselMetrics
    let cpu = CPUSampler()

    func addRoutes(to router: Router<Context>) {
        router.get("/v1/status", use: status)
        router.get("/ready", use: ready)
        router.get("/metrics", use: prometheus)
    }

    struct Status: Encodable {
        struct Host: Encodable {
            let cpuCount: Int
            let cpuPercent: Double?
            let loadAverage: [Double]?
            let memoryTotalBytes: Int64
            let memoryUsedBytes: Int64?
            let memoryAvailableBytes: Int64?
        }

        struct Process: Encodable {
            let pid: Int32
            let rssBytes: Int64?
            let cpuPercent: Double?
        }

        struct Runner: Encodable {
            let model: String
            let pid: Int32?
            let state: String
            let device: String?
            let rssBytes: Int64?
            /// What the runner reported after loading: resident plus CUDA memory.
            let reportedMemoryBytes: Int64?
            let gpuMemoryBytes: Int64?
            let loadCount: Int
            let restarts: Int
            let lastLoadSeconds: Double?
            let step: Int?
            let totalSteps: Int?
            let waiting: Int
        }

        struct Queue: Encodable {
            struct Priority: Encodable {
                let priority: Int
                let count: Int
            }

            let depth: Int
            let capacity: Int
            let byPriority: [Priority]
        }

        struct RunningJob: Encodable {
            let id: String
            let model: String
            let priority: Int
            let step: Int
            let totalSteps: Int
            let etaSeconds: Double?
            let startedAt: Date?
        }

        let version: String
        let startedAt: Date
        let uptimeSeconds: Double
        let readiness: String
        let reason: String?
        let shuttingDown: Bool
        let host: Host
        let process: Process
        let runners: [Runner]
        let queue: Queue
        let running: [RunningJob]
        let counters: EaselMetrics.Counters
    }

    @Sendable func status(_ request: Request, context: Context) async throws -> Response {
        let overview = await scheduler.overview()
        let models = await engine.listModels()
        let readiness = await engine.readiness
        let usage = await cpu.usage()
        metrics.refresh(overview: overview, models: models, ready: Self.isReady(readiness, overview), usage: usage)
        let memory = SystemStats.hostMemory()
        let pid = getpid()
        var byPriority: [Int: Int] = [:]
        for job in overview.queued { byPriority[job.priority, default: 0] += 1 }
        let (state, reason) = Self.describe(readiness)
        let status = Status(
            version: EaselVersion.current, startedAt: metrics.started,
            uptimeSeconds: (Date().timeIntervalSince(metrics.started) * 10).rounded() / 10,
            readiness: overview.draining ? "shutting_down" : state, reason: reason, shuttingDown: overview.draining,
            host: .init(
                cpuCount: SystemStats.cpuCount, cpuPercent: usage.hostPercent, loadAverage: SystemStats.loadAverage(),
                memoryTotalBytes: memory.totalBytes, memoryUsedBytes: memory.usedBytes, memoryAvailableBytes: memory.availableBytes
            ),
            process: .init(pid: pid, rssBytes: SystemStats.residentBytes(pid: pid), cpuPercent: usage.processPercent),
            runners: models.filter { $0.runtime.state != .unloaded || $0.runtime.loadCount > 0 }.map { listing in
                let runtime = listing.runtime
                let live = runtime.state != .unloaded
                return Status.Runner(
                    model: listing.entry.id, pid: live ? runtime.runnerPid : nil, state: runtime.state.rawValue,
                    device: runtime.device, rssBytes: live ? runtime.runnerPid.flatMap(SystemStats.residentBytes(pid:)) : nil,
                    reportedMemoryBytes: live ? runtime.memoryBytes : nil, gpuMemoryBytes: live ? runtime.gpuMemoryBytes : nil,
                    loadCount: runtime.loadCount, restarts: runtime.restarts, lastLoadSeconds: runtime.lastLoadSeconds,
                    step: runtime.step, totalSteps: runtime.totalSteps, waiting: runtime.waiting
                )
            },
            queue: .init(
                depth: overview.queued.count, capacity: overview.maxQueued,
                byPriority: byPriority.sorted { $0.key > $1.key }.map { .init(priority: $0.key, count: $0.value) }
            ),
            running: overview.running.map { snapshot in
                let job = snapshot.job
                return .init(
                    id: job.id, model: job.spec.modelID, priority: job.priority, step: job.step, totalSteps: job.totalSteps,
                    etaSeconds: snapshot.etaSeconds.map { ($0 * 10).rounded() / 10 }, startedAt: job.startedAt
                )
            },
            counters: metrics.counterValues
        )
        return JSONResponse.make(status)
    }

    struct Readiness: Encodable {
        struct Model: Encodable {
            let id: String
            let state: String
        }

        let ready: Bool
        let status: String
        let reason: String?
        let defaultModel: String?
        let loadedModels: [Model]
    }

    /// 200 when generation requests are taken and can be served: start-up is done, the
    /// server is not shutting down, and (with `?model=<id>`) that model is loaded now.
    @Sendable func ready(_ request: Request, context: Context) async throws -> Response {
        let overview = await scheduler.overview()
        let readiness = await engine.readiness
        let models = await engine.listModels()
        let loaded = models.filter { $0.runtime.state != .unloaded }.map { Readiness.Model(id: $0.entry.id, state: $0.runtime.state.rawValue) }
        var (status, reason) = Self.describe(readiness)
        var ready = Self.isReady(readiness, overview)
        if overview.draining {
            status = "shutting_down"
            reason = "the server is shutting down"
        } else if ready, let wanted = request.uri.queryParameters["model"].map(String.init), !loaded.contains(where: { $0.id == wanted }) {
            ready = false
            status = "not_loaded"
            reason = models.contains { $0.entry.id == wanted } ? "model \(wanted) is not loaded" : "no model '\(wanted)'"
        }
        var response = JSONResponse.make(
            Readiness(ready: ready, status: status, reason: reason, defaultModel: await engine.defaultModelID(), loadedModels: loaded),
            status: ready ? .ok : .serviceUnavailable
        )
        if !ready { response.headers[.retryAfter] = "5" }
        return response
    }

    @Sendable func prometheus(_ request: Request, context: Context) async throws -> Response {
        let overview = await scheduler.overview()
        let models = await engine.listModels()
        let readiness = await engine.readiness
        metrics.refresh(overview: overview, models: models, ready: Self.isReady(readiness, overview), usage: await cpu.usage())
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 * 1024)
        metrics.registry.emit(into: &buffer)
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: buffer))
        )
    }

    static func isReady(_ readiness: EaselRunners.Readiness, _ overview: JobScheduler.Overview) -> Bool {
        readiness == .ready && !overview.draining
    }

    static func describe(_ readiness: EaselRunners.Readiness) -> (String, String?) {
        switch readiness {
        case .ready: ("ready", nil)
        case .starting(let reason): ("starting", reason)
        case .failed(let reason): ("failed", reason)
        }
    }
}
