import Foundation
import Logging

/// Something that happened to a job, as event streams report it.
public struct JobEvent: Sendable {
    public enum Kind: String, Sendable, Codable {
        case queued, started, progress, succeeded, failed, cancelled
    }

    public let kind: Kind
    public let snapshot: JobSnapshot
    public let preview: GenerationProgress.Preview?

    public var isFinal: Bool { kind == .succeeded || kind == .failed || kind == .cancelled }
}

/// A job with the values that only the live queue knows.
public struct JobSnapshot: Sendable {
    public var job: Job
    /// 1 for the job that runs next; nil unless queued.
    public var queuePosition: Int?
    /// Seconds left, estimated from the steps so far; nil until a step has run.
    public var etaSeconds: Double?

    public init(job: Job, queuePosition: Int? = nil, etaSeconds: Double? = nil) {
        self.job = job
        self.queuePosition = queuePosition
        self.etaSeconds = etaSeconds
    }
}

/// The job queue: priority first, then first come first served; at most one running
/// job per model. Every change is written to the store before it is announced, so a
/// restart loses nothing that was queued.
public actor JobScheduler {
    public struct Configuration: Sendable {
        public var maxQueued: Int
        public var previewEvery: Int
        public var retentionMaxAge: TimeInterval
        public var retentionMaxBytes: Int64
        /// Most queued or running jobs per ``RequestClient``; 0: no limit but `maxQueued`.
        public var maxQueuedPerClient = 0
        /// Times a job runs again after its runner crashed, hung or broke the protocol.
        public var runnerCrashRetries = 0

        public init(maxQueued: Int, previewEvery: Int, retentionMaxAge: TimeInterval, retentionMaxBytes: Int64) {
            self.maxQueued = maxQueued
            self.previewEvery = previewEvery
            self.retentionMaxAge = retentionMaxAge
            self.retentionMaxBytes = retentionMaxBytes
        }
    }

    /// The live queue at one moment, for status and metrics.
    public struct Overview: Sendable {
        /// Queued jobs in the order they will run.
        public var queued: [Job]
        public var running: [JobSnapshot]
        public var maxQueued: Int
        public var draining: Bool
    }

    private struct RunningJob {
        var job: Job
        /// The engine call alone, so that cancelling it leaves the bookkeeping after it intact.
        /// Jobs merged into one call share it.
        var generation: Task<[GenerationOutput], Error>?
        /// The jobs of the engine call this job runs in, itself included.
        var callMembers: [String] = []
        /// A cancel that came before the engine call began.
        var cancelRequested = false
        let started: ContinuousClock.Instant
        var firstStep: (step: Int, at: ContinuousClock.Instant)?
        var etaSeconds: Double?
    }

    private struct Subscriber {
        let jobID: String?
        let continuation: AsyncStream<JobEvent>.Continuation
    }

    public nonisolated let store: any JobStore
    private let generator: any ImageGenerator
    private let configuration: Configuration
    private let logger: Logger
    private var queued: [Job] = []
    private var running: [String: RunningJob] = [:]
    private var subscribers: [UUID: Subscriber] = [:]
    private var draining = false
    /// The client that submitted each queued or running job, when the queue share is on.
    private var owners: [String: String] = [:]
    /// Runs again so far, by job id, after a lost runner.
    private var retries: [String: Int] = [:]

    public init(store: any JobStore, generator: any ImageGenerator, configuration: Configuration, logger: Logger) {
        self.store = store
        self.generator = generator
        self.configuration = configuration
        self.logger = logger
    }

    /// Queues again the jobs that were queued or running when the server stopped.
    public func restore() async throws {
        for var job in try await store.unfinishedJobs() {
            job.state = .queued
            job.step = 0
            job.startedAt = nil
            try await store.save(job)
            enqueue(job)
        }
        if !queued.isEmpty { logger.notice("restored \(queued.count) queued jobs") }
        try await enforceRetention()
        dispatch()
    }

    /// Queues `jobs` together: all of them, or none when the queue has no room.
    public func submit(_ jobs: [Job]) async throws -> [JobSnapshot] {
        guard !draining else {
            throw EaselError(.shuttingDown, "the server is shutting down; retry against the next instance")
        }
        guard queued.count + jobs.count <= configuration.maxQueued else {
            throw EaselError(
                .queueFull,
                "the queue has room for \(max(0, configuration.maxQueued - queued.count)) more jobs (--max-queue \(configuration.maxQueued)); retry later"
            )
        }
        if configuration.maxQueuedPerClient > 0, let client = RequestClient.id {
            let active = owners.values.filter { $0 == client }.count
            guard active + jobs.count <= configuration.maxQueuedPerClient else {
                throw EaselError(
                    .queueFull,
                    "this client has \(active) jobs queued or running, and may have \(configuration.maxQueuedPerClient) (--max-queue-per-key); retry when one finishes"
                )
            }
            for job in jobs { owners[job.id] = client }
        }
        for job in jobs {
            try await store.save(job)
            enqueue(job)
            emit(.queued, job)
        }
        dispatch()
        var snapshots: [JobSnapshot] = []
        for job in jobs { snapshots.append(try await snapshot(id: job.id)) }
        return snapshots
    }

    /// Cancels a queued job at once, or a running one at its next step. A finished job
    /// is returned unchanged.
    public func cancel(id: String) async throws -> JobSnapshot {
        if let index = queued.firstIndex(where: { $0.id == id }) {
            var job = queued.remove(at: index)
            owners[id] = nil
            retries[id] = nil
            job.state = .cancelled
            job.finishedAt = Date()
            job.failure = .init(code: EaselError.Code.cancelled.rawValue, message: "cancelled while queued")
            try await store.save(job)
            emit(.cancelled, job)
            return JobSnapshot(job: job)
        }
        if running[id] != nil {
            running[id]?.cancelRequested = true
            await stopCancelled(id)
        }
        return try await snapshot(id: id)
    }

    /// Stops a running job whose cancel was asked for. Alone in its engine call, it stops
    /// the call; merged with jobs that go on, it ends now as cancelled and its images are
    /// dropped when the call returns.
    private func stopCancelled(_ id: String) async {
        guard let run = running[id], run.cancelRequested else { return }
        let goingOn = run.callMembers.filter { $0 != id && running[$0]?.cancelRequested == false }
        if goingOn.isEmpty {
            run.generation?.cancel()
        } else if run.generation != nil {
            let error = EaselError(.cancelled, "cancelled while running; the \(goingOn.count) jobs merged with it go on")
            await finish(id, .failure(error), mergedJobs: run.callMembers.count)
        }
    }

    public func snapshot(id: String) async throws -> JobSnapshot {
        if let index = queued.firstIndex(where: { $0.id == id }) {
            return JobSnapshot(job: queued[index], queuePosition: index + 1)
        }
        if let run = running[id] {
            return JobSnapshot(job: run.job, etaSeconds: run.etaSeconds)
        }
        guard let job = try await store.job(id: id) else {
            throw EaselError(.jobNotFound, "no job '\(id)'; GET /v1/jobs lists them")
        }
        return JobSnapshot(job: job)
    }

    /// Events of one job (its current state first), or of every job when `jobID` is nil.
    /// A one-job stream ends after the job's final event.
    public func events(jobID: String?) async throws -> AsyncStream<JobEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: JobEvent.self, bufferingPolicy: .bufferingNewest(512))
        if let jobID {
            let current = try await snapshot(id: jobID)
            let kind: JobEvent.Kind = switch current.job.state {
            case .queued: .queued
            case .running: .started
            case .succeeded: .succeeded
            case .failed: .failed
            case .cancelled: .cancelled
            }
            continuation.yield(JobEvent(kind: kind, snapshot: current, preview: nil))
            if current.job.state.isFinal {
                continuation.finish()
                return stream
            }
        }
        let id = UUID()
        subscribers[id] = Subscriber(jobID: jobID, continuation: continuation)
        continuation.onTermination = { _ in Task { await self.unsubscribe(id) } }
        return stream
    }

    /// Waits for the job's final state.
    public func finished(id: String) async throws -> Job {
        for await event in try await events(jobID: id) where event.isFinal {
            return event.snapshot.job
        }
        return try await snapshot(id: id).job
    }

    /// Stops taking work and waits up to `grace` for running jobs. Jobs still queued
    /// stay in the store and run after the next start; so do jobs whose runner is
    /// stopped under them.
    public func drain(grace: Duration) async {
        draining = true
        let deadline = ContinuousClock.now + grace
        while !running.isEmpty, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Whether the scheduler has stopped taking work for a shutdown.
    public var isDraining: Bool { draining }

    public func overview() -> Overview {
        Overview(
            queued: queued,
            running: running.values.map { JobSnapshot(job: $0.job, etaSeconds: $0.etaSeconds) }.sorted { $0.job.id < $1.job.id },
            maxQueued: configuration.maxQueued, draining: draining
        )
    }

    /// Stops the running jobs at their next step after a drain ran out of time. They stay
    /// stored as running and run again after the next start; whoever waits on them is told.
    public func interruptRunning() {
        for run in running.values { run.generation?.cancel() }
    }

    /// Records how delivering a job's webhook went.
    public func recordWebhookStatus(id: String, status: String) async {
        guard var job = try? await store.job(id: id) else { return }
        job.webhookStatus = status
        try? await store.save(job)
    }

    // MARK: - Running jobs

    private func enqueue(_ job: Job) {
        let index = queued.firstIndex { $0.priority < job.priority } ?? queued.endIndex
        queued.insert(job, at: index)
    }

    private func dispatch() {
        guard !draining else { return }
        var busyModels = Set(running.values.map(\.job.spec.modelID))
        var index = 0
        while index < queued.count {
            let job = queued[index]
            guard !busyModels.contains(job.spec.modelID) else {
                index += 1
                continue
            }
            queued.remove(at: index)
            busyModels.insert(job.spec.modelID)
            start(job)
        }
    }

    private func start(_ queuedJob: Job) {
        let job = markRunning(queuedJob)
        Task { await self.execute(job) }
    }

    @discardableResult
    private func markRunning(_ queuedJob: Job) -> Job {
        var job = queuedJob
        job.state = .running
        job.startedAt = Date()
        running[job.id] = RunningJob(job: job, callMembers: [job.id], started: .now)
        emit(.started, job)
        return job
    }

    /// Runs `head` with the queued jobs that can merge into its engine call.
    private func execute(_ head: Job) async {
        let limit = await generator.mergeLimit(for: head.spec.modelID)
        var members = [head]
        if running[head.id]?.cancelRequested == false {
            let companions = JobMerging.companions(of: head, in: queued, imageLimit: limit)
            let joining = Set(companions.map(\.id))
            queued.removeAll { joining.contains($0.id) }
            members += companions.map { markRunning($0) }
        }
        let memberIDs = members.map(\.id)
        if members.count > 1 { logger.info("merged jobs \(memberIDs.joined(separator: ", ")) into one engine call") }
        for member in members { try? await store.save(member) }
        let (progressStream, progressSink) = AsyncStream.makeStream(of: (Int, GenerationProgress).self)
        // One consumer keeps progress events in step order.
        let pump = Task {
            for await (member, progress) in progressStream { self.progressed(memberIDs[member], progress) }
        }
        let generation = Task { [generator, configuration] in
            try await generator.generate(members.map(\.spec), previewEvery: configuration.previewEvery) { member, progress in
                progressSink.yield((member, progress))
            }
        }
        for id in memberIDs {
            running[id]?.generation = generation
            running[id]?.callMembers = memberIDs
        }
        // Cancels that came before the engine call began.
        for id in memberIDs { await stopCancelled(id) }
        let result = await generation.result
        progressSink.finish()
        await pump.value
        // Last member first: a member queued again for a retry goes to the queue's front,
        // so the others end up in their old order.
        for (index, id) in memberIDs.enumerated().reversed() {
            await finish(id, result.map { $0[index] }, mergedJobs: memberIDs.count)
        }
    }

    private func progressed(_ id: String, _ progress: GenerationProgress) {
        guard var run = running[id] else { return }
        let now = ContinuousClock.now
        run.job.step = progress.step
        run.job.totalSteps = progress.total
        if let first = run.firstStep, progress.step > first.step {
            let perStep = (now - first.at) / (progress.step - first.step)
            run.etaSeconds = Self.seconds(perStep * (progress.total - progress.step))
        } else if run.firstStep == nil {
            run.firstStep = (progress.step, now)
        }
        running[id] = run
        emit(.progress, run.job, etaSeconds: run.etaSeconds, preview: progress.preview)
    }

    private func finish(_ id: String, _ result: Result<GenerationOutput, Error>, mergedJobs: Int) async {
        guard var job = running[id]?.job else { return }
        if draining, case .failure(let error) = result,
            error is CancellationError || [.runnerCrashed, .runnerTimeout, .cancelled].contains((error as? EaselError)?.code)
        {
            // The runner was stopped by the shutdown: the stored job stays `running`
            // and is queued again at the next start.
            running[id] = nil
            endStreams(of: id)
            return
        }
        if !draining, case .failure(let error as EaselError) = result,
            [.runnerCrashed, .runnerTimeout, .runnerProtocolError].contains(error.code),
            running[id]?.cancelRequested != true, retries[id, default: 0] < configuration.runnerCrashRetries
        {
            retries[id, default: 0] += 1
            logger.warning("job \(id) lost its runner (\(error.code.rawValue)); running it again (retry \(retries[id] ?? 0) of \(configuration.runnerCrashRetries))")
            running[id] = nil
            job.state = .queued
            job.step = 0
            job.startedAt = nil
            try? await store.save(job)
            queued.insert(job, at: 0)
            emit(.queued, job)
            dispatch()
            return
        }
        owners[id] = nil
        retries[id] = nil
        let finishedAt = Date()
        do {
            let output = try result.get()
            for (index, image) in output.images.enumerated() {
                let record = Job.Image(
                    id: "\(job.id)-\(index)", index: index, seed: image.seed, format: image.format,
                    width: image.width, height: image.height, byteCount: image.data.count
                )
                try await store.saveImage(record, data: image.data)
                job.images.append(record)
            }
            job.state = .succeeded
            job.step = job.totalSteps
            job.runner = output.runner
            job.timings = GenerationTimings(
                queueSeconds: (job.startedAt ?? finishedAt).timeIntervalSince(job.createdAt),
                loadSeconds: output.loadSeconds, engineSeconds: output.engineSeconds,
                totalSeconds: finishedAt.timeIntervalSince(job.createdAt), mergedJobs: mergedJobs
            )
        } catch let error as EaselError where error.code == .cancelled {
            job.state = .cancelled
            job.failure = .init(error)
        } catch is CancellationError {
            job.state = .cancelled
            job.failure = .init(code: EaselError.Code.cancelled.rawValue, message: "cancelled while running")
        } catch let error as EaselError {
            job.state = .failed
            job.failure = .init(error)
        } catch {
            job.state = .failed
            job.failure = .init(code: EaselError.Code.internalError.rawValue, message: "\(error)")
        }
        job.finishedAt = finishedAt
        do {
            try await store.save(job)
        } catch {
            logger.error("cannot store job \(id): \(error)")
        }
        running[id] = nil
        emit(job.state == .succeeded ? .succeeded : job.state == .cancelled ? .cancelled : .failed, job)
        dispatch()
        try? await enforceRetention()
    }

    private func enforceRetention() async throws {
        let removed = try await store.enforceRetention(
            maxAge: configuration.retentionMaxAge, maxBytes: configuration.retentionMaxBytes, now: Date()
        )
        if !removed.isEmpty { logger.info("retention removed \(removed.count) finished jobs") }
    }

    // MARK: - Events

    private func emit(_ kind: JobEvent.Kind, _ job: Job, etaSeconds: Double? = nil, preview: GenerationProgress.Preview? = nil) {
        let position = queued.firstIndex { $0.id == job.id }.map { $0 + 1 }
        let event = JobEvent(
            kind: kind, snapshot: JobSnapshot(job: job, queuePosition: position, etaSeconds: etaSeconds), preview: preview
        )
        for (id, subscriber) in subscribers where subscriber.jobID == nil || subscriber.jobID == job.id {
            subscriber.continuation.yield(event)
            if event.isFinal, subscriber.jobID != nil {
                subscriber.continuation.finish()
                subscribers[id] = nil
            }
        }
    }

    /// Ends the one-job streams of `id` without a final event.
    private func endStreams(of jobID: String) {
        for (id, subscriber) in subscribers where subscriber.jobID == jobID {
            subscriber.continuation.finish()
            subscribers[id] = nil
        }
    }

    private func unsubscribe(_ id: UUID) {
        subscribers[id] = nil
    }

    private static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
