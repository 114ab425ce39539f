import EaselCore
import EaselRunners
import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle

/// The server's Prometheus metrics and the counters `GET /v1/status` shows. One
/// instance per application, made in ``buildApplication`` and handed to what records
/// into it; nothing reaches for a global registry.
final class EaselMetrics: Sendable {
    /// Totals since the server started.
    struct Counters: Sendable, Encodable {
        var imagesGenerated = 0
        var jobsSucceeded = 0
        var jobsFailed = 0
        var jobsCancelled = 0
        var jobsRetried = 0
        var runnerRestarts = 0
        var modelLoads = 0
        var requests = 0
        /// Failed jobs by error code, as a list so codes stay as they are in JSON.
        var failures: [Failure] = []

        struct Failure: Sendable, Encodable {
            let code: String
            var count: Int
        }
    }

    let registry: PrometheusCollectorRegistry
    let started = Date()
    private let counters = LockedValue(Counters())
    /// Serialises scrapes, which reset and refill the snapshot-derived series.
    private let refreshLock = NSLock()
    private let seenPriorities = LockedValue(Set<Int>())

    static let requestBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60), .seconds(120), .seconds(300),
    ]
    static let jobBuckets: [Duration] = [
        .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(20), .seconds(30),
        .seconds(60), .seconds(120), .seconds(300), .seconds(600), .seconds(1800),
    ]

    init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        // Series that exist from the start, so that rates work from the first scrape.
        for state in ["succeeded", "failed", "cancelled"] {
            _ = registry.counter(name: "easel_jobs_finished_total", labels: [("state", state)], help: Help.jobsFinished)
        }
        _ = registry.counter(name: "easel_jobs_retried_total", help: Help.jobsRetried)
        _ = registry.counter(name: "easel_merged_jobs_total", help: Help.mergedJobs)
    }

    var counterValues: Counters { counters.withLockedValue { $0 } }

    // MARK: - Requests

    func recordRequest(method: String, route: String, status: Int, duration: Duration) {
        // Clients choose methods; only the known ones become label values.
        let method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].contains(method) ? method : "other"
        registry.counter(
            name: "easel_http_requests_total", labels: [("method", method), ("route", route), ("status", String(status))],
            help: "HTTP requests by route and status"
        ).increment()
        registry.durationHistogram(
            name: "easel_http_request_duration_seconds", labels: [("method", method), ("route", route)],
            buckets: Self.requestBuckets, help: "Time to the response head, by route"
        ).record(duration)
        counters.withLockedValue { $0.requests += 1 }
    }

    // MARK: - Jobs

    private enum Help {
        static let jobsFinished = "Jobs that reached a final state"
        static let jobsRetried = "Jobs run again after their runner was lost"
        static let mergedJobs = "Jobs that shared their engine call with other jobs (--max-batch-size)"
    }

    func record(_ event: JobEvent) {
        let job = event.snapshot.job
        switch event.kind {
        case .started:
            if let started = job.startedAt {
                registry.durationHistogram(
                    name: "easel_job_queue_wait_seconds", buckets: Self.jobBuckets, help: "Time jobs waited in the queue"
                ).record(.seconds(max(0, started.timeIntervalSince(job.createdAt))))
            }
        case .succeeded, .failed, .cancelled:
            let state = event.kind.rawValue
            registry.counter(name: "easel_jobs_finished_total", labels: [("state", state)], help: Help.jobsFinished).increment()
            if let started = job.startedAt, let finished = job.finishedAt {
                registry.durationHistogram(
                    name: "easel_job_duration_seconds", labels: [("state", state)], buckets: Self.jobBuckets,
                    help: "Time jobs ran, from start to their final state"
                ).record(.seconds(max(0, finished.timeIntervalSince(started))))
            }
            if event.kind == .succeeded {
                registry.counter(
                    name: "easel_images_generated_total", labels: [("model", job.spec.modelID)], help: "Images generated"
                ).increment(by: Int64(job.images.count))
                if let merged = job.timings?.mergedJobs, merged > 1 {
                    registry.counter(name: "easel_merged_jobs_total", help: Help.mergedJobs).increment()
                }
            }
            if event.kind == .failed, let code = job.failure?.code {
                registry.counter(name: "easel_job_failures_total", labels: [("code", code)], help: "Failed jobs by error code")
                    .increment()
            }
            _ = queuedOnce.withLockedValue { $0.remove(job.id) }
            counters.withLockedValue { counters in
                switch event.kind {
                case .succeeded:
                    counters.jobsSucceeded += 1
                    counters.imagesGenerated += job.images.count
                case .failed:
                    counters.jobsFailed += 1
                    let code = job.failure?.code ?? "unknown"
                    if let index = counters.failures.firstIndex(where: { $0.code == code }) {
                        counters.failures[index].count += 1
                    } else {
                        counters.failures.append(.init(code: code, count: 1))
                    }
                default:
                    counters.jobsCancelled += 1
                }
            }
        case .queued:
            // The second `queued` of a job: its runner was lost and it runs again.
            if retriedJob(job.id) {
                registry.counter(name: "easel_jobs_retried_total", help: Help.jobsRetried).increment()
                counters.withLockedValue { $0.jobsRetried += 1 }
            }
        case .progress:
            break
        }
    }

    /// Ids of unfinished jobs seen queued, to tell a retry (queued again) from a submission.
    private let queuedOnce = LockedValue(Set<String>())

    private func retriedJob(_ id: String) -> Bool {
        queuedOnce.withLockedValue { seen in
            if seen.contains(id) { return true }
            if seen.count > 100_000 { seen.removeAll() }
            seen.insert(id)
            return false
        }
    }

    // MARK: - Scrape-time values

    /// Sets the gauges (and the counters kept by others) that are read at scrape time.
    func refresh(overview: JobScheduler.Overview, models: [ModelListing], ready: Bool, usage: CPUSampler.Usage) {
        refreshLock.withLock {
            registry.gauge(name: "easel_queue_depth", help: "Jobs waiting in the queue").set(to: Double(overview.queued.count))
            registry.gauge(name: "easel_queue_capacity", help: "Most jobs the queue holds (--max-queue)")
                .set(to: Double(overview.maxQueued))
            var byPriority: [Int: Int] = [:]
            for job in overview.queued { byPriority[job.priority, default: 0] += 1 }
            let priorities = seenPriorities.withLockedValue { seen in
                seen.formUnion(byPriority.keys)
                return seen
            }
            for priority in priorities {
                registry.gauge(
                    name: "easel_queue_depth_by_priority", labels: [("priority", String(priority))], help: "Queued jobs by priority"
                ).set(to: Double(byPriority[priority] ?? 0))
            }
            registry.gauge(name: "easel_jobs_running", help: "Jobs running now").set(to: Double(overview.running.count))
            registry.gauge(name: "easel_ready", help: "1 when a model can be served and the server is not shutting down")
                .set(to: ready ? 1 : 0)
            registry.gauge(name: "easel_shutting_down", help: "1 while the server drains for a shutdown")
                .set(to: overview.draining ? 1 : 0)

            var restarts = 0, loads = 0
            for listing in models {
                let model = [("model", listing.entry.id)]
                let runtime = listing.runtime
                restarts += runtime.restarts
                loads += runtime.loadCount
                Self.setCounter(
                    registry.counter(name: "easel_model_loads_total", labels: model, help: "Model loads (runner starts)"),
                    to: Double(runtime.loadCount)
                )
                Self.setCounter(
                    registry.counter(name: "easel_model_load_seconds_total", labels: model, help: "Seconds spent loading models"),
                    to: runtime.loadSecondsTotal
                )
                Self.setCounter(
                    registry.counter(
                        name: "easel_runner_restarts_total", labels: model, help: "Runners lost (crashed, killed or hung) and replaced"
                    ),
                    to: Double(runtime.restarts)
                )
                guard runtime.state != .unloaded || runtime.loadCount > 0 else { continue }
                registry.gauge(name: "easel_model_loaded", labels: model, help: "1 while a runner holds the model")
                    .set(to: runtime.state == .unloaded ? 0 : 1)
                registry.gauge(name: "easel_runner_resident_bytes", labels: model, help: "Resident memory of the model's runner")
                    .set(to: Double(runtime.runnerPid.flatMap(SystemStats.residentBytes(pid:)) ?? 0))
                if let gpu = runtime.gpuMemoryBytes {
                    registry.gauge(name: "easel_runner_gpu_memory_bytes", labels: model, help: "GPU memory the runner reported")
                        .set(to: Double(runtime.state == .unloaded ? 0 : gpu))
                }
            }
            counters.withLockedValue {
                $0.runnerRestarts = restarts
                $0.modelLoads = loads
            }

            let pid = getpid()
            if let rss = SystemStats.residentBytes(pid: pid) {
                registry.gauge(name: "process_resident_memory_bytes", help: "Resident memory of the server process").set(to: Double(rss))
            }
            if let cpu = SystemStats.processCPUSeconds(pid: pid) {
                Self.setCounter(registry.counter(name: "process_cpu_seconds_total", help: "CPU time of the server process"), to: cpu)
            }
            registry.gauge(name: "process_start_time_seconds", help: "Start of the server, in Unix seconds")
                .set(to: started.timeIntervalSince1970)
            let memory = SystemStats.hostMemory()
            registry.gauge(name: "easel_host_memory_total_bytes", help: "Memory of the host").set(to: Double(memory.totalBytes))
            if let used = memory.usedBytes {
                registry.gauge(name: "easel_host_memory_used_bytes", help: "Memory in use on the host (total less available)")
                    .set(to: Double(used))
            }
            if let percent = usage.hostPercent {
                registry.gauge(name: "easel_host_cpu_percent", help: "CPU use of the host since the previous reading, all cores")
                    .set(to: percent)
            }
        }
    }

    /// Counters whose source of truth lives elsewhere (the model workers) are set to it.
    private static func setCounter(_ counter: Counter, to value: Double) {
        counter.reset()
        if value > 0 { counter.increment(by: value) }
    }
}

/// Feeds every job event into the metrics for the server's lifetime.
struct JobMetricsService: Service {
    let scheduler: JobScheduler
    let metrics: EaselMetrics

    func run() async throws {
        let events = try await scheduler.events(jobID: nil)
        await cancelWhenGracefulShutdown {
            for await event in events { metrics.record(event) }
        }
    }
}

/// Counts requests by route, status and time to the response head.
struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: EaselMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            metrics.recordRequest(
                method: request.method.rawValue, route: context.endpointPath ?? "unmatched", status: response.status.code,
                duration: .now - start
            )
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.recordRequest(
                method: request.method.rawValue, route: context.endpointPath ?? "unmatched", status: status, duration: .now - start
            )
            throw error
        }
    }
}

/// A value behind a lock.
final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    func withLockedValue<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

extension PrometheusCollectorRegistry {
    /// The metric named `name` in full, with `help`; the registry keeps one per name and labels.
    func counter(name: String, labels: [(String, String)] = [], help: String) -> Counter {
        makeCounter(descriptor: Self.descriptor(name, help), labels: labels)
    }

    func gauge(name: String, labels: [(String, String)] = [], help: String) -> Gauge {
        makeGauge(descriptor: Self.descriptor(name, help), labels: labels)
    }

    func durationHistogram(name: String, labels: [(String, String)] = [], buckets: [Duration], help: String) -> DurationHistogram {
        makeDurationHistogram(descriptor: Self.descriptor(name, help), labels: labels, buckets: buckets)
    }

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}
