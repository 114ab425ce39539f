import EaselCore
import Foundation
import Logging

/// What the server needs to start a runner process.
public struct RunnerLaunch: Sendable {
    public var python: URL
    public var arguments: [String]
    public var environment: [String: String]

    public init(python: URL, arguments: [String], environment: [String: String]) {
        self.python = python
        self.arguments = arguments
        self.environment = environment
    }
}

/// One live runner process, spoken to in the runner protocol. Calls wait for their
/// reply; a runner that dies, breaks the protocol or misses its heartbeat fails every
/// call in flight and is finished: the owner starts a new one.
actor Runner {
    struct Timing: Sendable {
        var heartbeatTimeout: Duration
        var loadTimeout: Duration
    }

    private struct PendingCall {
        let continuation: CheckedContinuation<RunnerEvent, Error>
        /// Told each step with the member of a merged call the progress is for.
        let onProgress: (@Sendable (_ member: Int, GenerationProgress) -> Void)?
        /// The jobs the call serves: 1 unless jobs were merged.
        var members = 1
        let deadline: ContinuousClock.Instant?
    }

    nonisolated let pid: Int32
    private let process: RunnerProcess
    private let timing: Timing
    private let logger: Logger
    private var pending: [String: PendingCall] = [:]
    private var helloWaiter: CheckedContinuation<RunnerHello, Error>?
    private var helloDeadline: ContinuousClock.Instant?
    private var hello: RunnerHello?
    private var failure: EaselError?
    private var lastHeard = ContinuousClock.now
    private var nextCallNumber = 0
    private var monitors: [Task<Void, Never>] = []

    private init(process: RunnerProcess, timing: Timing, logger: Logger) {
        self.pid = process.pid
        self.process = process
        self.timing = timing
        self.logger = logger
    }

    /// Starts a runner and waits for its `hello`.
    static func start(_ launch: RunnerLaunch, timing: Timing, logger: Logger) async throws -> (Runner, RunnerHello) {
        let process: RunnerProcess
        do {
            process = try RunnerProcess(
                executable: launch.python, arguments: launch.arguments, environment: launch.environment, logger: logger
            )
        } catch {
            throw EaselError(.runnerSetupFailed, "cannot start the runner (\(launch.python.path)): \(error)")
        }
        let runner = Runner(process: process, timing: timing, logger: logger)
        await runner.startMonitors()
        return (runner, try await runner.awaitHello())
    }

    var isAlive: Bool { failure == nil }

    func load(_ entry: ModelEntry, options: LoadOptions, device: String, threads: Int, warmUp: Bool) async throws -> LoadedModel {
        let id = newCallID("load")
        // diffusers takes its weight type as a torch dtype; stable-diffusion.cpp by name.
        let dtypes = ["f32": "float32", "f16": "float16"]
        let isDiffusers = options.engine == .diffusers
        let message = RunnerRequest.Load(
            id: id,
            model: .init(
                id: entry.id, path: entry.path, format: entry.format.rawValue,
                architecture: entry.architecture, configDir: entry.configDir, vaePath: entry.vaePath
            ),
            device: device, dtype: isDiffusers ? dtypes[options.weightType] ?? "auto" : "auto", threads: threads, warmUp: warmUp,
            engine: options.engine.rawValue, weightType: isDiffusers ? "auto" : options.weightType, vaeTiling: options.vaeTiling
        )
        let reply = try await call(id: id, message, deadline: .now + timing.loadTimeout, members: 1, onProgress: nil)
        guard case .loaded(let loaded) = reply else { throw protocolViolation("expected 'loaded' for \(id)") }
        return loaded
    }

    /// Generates `specs` in one call (merged jobs when more than one); returns each
    /// spec's images and the call's engine seconds.
    func generate(
        _ specs: [GenerationSpec], loraPaths: [String: String], previewEvery: Int,
        onProgress: @escaping @Sendable (_ member: Int, GenerationProgress) -> Void
    ) async throws -> (images: [[GenerationResult.Image]], engineSeconds: Double) {
        try Task.checkCancellation()
        let id = newCallID("generate")
        let message = RunnerRequest.Generate(id: id, specs: specs, loraPaths: loraPaths, previewEvery: previewEvery)
        let reply = try await withTaskCancellationHandler {
            try await call(id: id, message, deadline: nil, members: specs.count, onProgress: onProgress)
        } onCancel: {
            Task { await self.cancel(id) }
        }
        guard case .result(_, let result) = reply else { throw protocolViolation("expected 'result' for \(id)") }
        let seedCounts = specs.map(\.seeds.count)
        guard let images = result.imagesByMember(seedCounts: seedCounts) else {
            throw protocolViolation("asked for \(seedCounts) images per member, got \(result.images.count) that do not match")
        }
        return (images, result.engineSeconds)
    }

    func cancel(_ id: String) {
        guard pending[id] != nil else { return }
        guard hello?.cancelEndsRunner == true else {
            try? send(RunnerRequest.Control(type: "cancel", id: id))
            return
        }
        // The engine cannot stop inside a generation (stable-diffusion.cpp): ending the
        // runner is the only way, and the next request loads the model again.
        logger.notice("cancelling \(id): ending runner \(pid), whose engine cannot stop a running generation")
        process.signal(SIGKILL)
        fail(EaselError(
            .cancelled,
            "cancelled while running; \(hello?.engines.first ?? "this engine") cannot stop a running generation, so its runner (pid \(pid)) was ended and the model loads again on next use"
        ))
    }

    /// Asks the runner to exit, and kills it if it has not within `grace`.
    func shutdown(grace: Duration = .seconds(5)) async {
        if failure == nil {
            try? send(RunnerRequest.Control(type: "shutdown", id: nil))
            process.closeInput()
        }
        let exited = await withTaskGroup(of: Bool.self) { group in
            group.addTask { [process] in
                _ = await process.exitStatus
                return true
            }
            group.addTask {
                try? await Task.sleep(for: grace)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !exited { process.signal(SIGKILL) }
        fail(EaselError(.runnerCrashed, "the runner was stopped"))
        monitors.forEach { $0.cancel() }
    }

    // MARK: - Protocol plumbing

    private func newCallID(_ kind: String) -> String {
        nextCallNumber += 1
        return "\(kind)-\(nextCallNumber)"
    }

    private func send(_ message: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        try process.send(try encoder.encode(message))
    }

    private func call(
        id: String, _ message: some Encodable, deadline: ContinuousClock.Instant?, members: Int,
        onProgress: (@Sendable (_ member: Int, GenerationProgress) -> Void)?
    ) async throws -> RunnerEvent {
        if let failure { throw failure }
        return try await withCheckedThrowingContinuation { continuation in
            pending[id] = PendingCall(continuation: continuation, onProgress: onProgress, members: members, deadline: deadline)
            do {
                try send(message)
            } catch {
                fail(EaselError(.runnerCrashed, "cannot write to the runner: \(error)"))
            }
        }
    }

    private func awaitHello() async throws -> RunnerHello {
        if let hello { return hello }
        if let failure { throw failure }
        helloDeadline = .now + timing.loadTimeout
        return try await withCheckedThrowingContinuation { helloWaiter = $0 }
    }

    private func startMonitors() {
        let frames = process.frames
        monitors.append(Task { [weak self] in
            do {
                for try await payload in frames {
                    guard let self else { return }
                    await self.receive(payload)
                }
                await self?.streamEnded(nil)
            } catch {
                await self?.streamEnded(error)
            }
        })
        let heartbeat = timing.heartbeatTimeout
        monitors.append(Task { [weak self] in
            let interval = min(Duration.seconds(2), heartbeat / 4)
            var beat = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self, await self.isAlive else { return }
                beat += 1
                await self.checkDeadlines(beat: beat)
            }
        })
    }

    private func receive(_ payload: Data) {
        lastHeard = .now
        let event: RunnerEvent
        do {
            event = try RunnerEvent.decode(payload)
        } catch {
            return kill(EaselError(.runnerProtocolError, "the runner sent a malformed message: \(error)"))
        }
        switch event {
        case .hello(let greeting):
            hello = greeting
            helloWaiter?.resume(returning: greeting)
            helloWaiter = nil
        case .progress(let id, let progress, let memberPreviews):
            guard let call = pending[id], let onProgress = call.onProgress else { break }
            for member in 0..<call.members {
                var memberProgress = progress
                if let memberPreviews {
                    memberProgress.preview = memberPreviews.indices.contains(member) ? memberPreviews[member] : nil
                }
                onProgress(member, memberProgress)
            }
        case .loaded(let loaded):
            pending.removeValue(forKey: loaded.id)?.continuation.resume(returning: event)
        case .result(let id, _):
            pending.removeValue(forKey: id)?.continuation.resume(returning: event)
        case .failure(let id, let code, let message, let field):
            let error = Self.easelError(runnerCode: code, message: message, field: field)
            if let id, let call = pending.removeValue(forKey: id) {
                call.continuation.resume(throwing: error)
            } else {
                logger.warning("runner error outside a call: \(code): \(message)")
            }
        case .pong, .bye:
            break
        }
    }

    private func checkDeadlines(beat: Int) {
        let now = ContinuousClock.now
        if let helloDeadline, helloWaiter != nil, now > helloDeadline {
            return kill(EaselError(.runnerTimeout, "the runner did not start within \(timing.loadTimeout)"))
        }
        if pending.values.contains(where: { $0.deadline.map { now > $0 } ?? false }) {
            return kill(EaselError(.runnerTimeout, "the runner did not load the model within \(timing.loadTimeout)"))
        }
        if hello != nil, now - lastHeard > timing.heartbeatTimeout {
            return kill(EaselError(
                .runnerTimeout, "the runner stopped answering (no heartbeat for \(timing.heartbeatTimeout)); it was killed"
            ))
        }
        try? send(RunnerRequest.Control(type: "ping", id: "ping-\(beat)"))
    }

    private func streamEnded(_ error: Error?) async {
        if let error, failure == nil {
            return kill(EaselError(.runnerProtocolError, "the runner broke the protocol: \(error)"))
        }
        let exit = await process.exitStatus
        fail(EaselError(.runnerCrashed, "the engine runner \(exit) during the request; the next request starts a new runner"))
    }

    private func kill(_ reason: EaselError) {
        guard failure == nil else { return }
        logger.error("killing runner \(pid): \(reason.message)")
        process.signal(SIGKILL)
        fail(reason)
    }

    /// Fails everything in flight with the first reason the runner was lost for.
    private func fail(_ reason: EaselError) {
        if failure == nil { failure = reason }
        let error = failure ?? reason
        helloWaiter?.resume(throwing: error)
        helloWaiter = nil
        let calls = pending.values
        pending = [:]
        calls.forEach { $0.continuation.resume(throwing: error) }
    }

    private func protocolViolation(_ detail: String) -> EaselError {
        let error = EaselError(.runnerProtocolError, "the runner broke the protocol: \(detail)")
        kill(error)
        return error
    }

    static func easelError(runnerCode: String, message: String, field: String? = nil) -> EaselError {
        switch runnerCode {
        case "invalid_input": EaselError(.invalidField, message, field: field)
        case "cancelled": EaselError(.cancelled, message)
        case "out_of_memory": EaselError(.outOfMemory, "the engine ran out of memory: \(message); try a smaller size or batch")
        case "model_load_failed": EaselError(.modelLoadFailed, message, field: "model")
        case "engine_unavailable": EaselError(.engineUnavailable, message, field: "engine")
        case "unsupported_model": EaselError(.unsupportedModel, message, field: "model")
        case "engine_error": EaselError(.engineError, "the engine failed: \(message)")
        default: EaselError(.runnerProtocolError, "the runner reported \(runnerCode): \(message)")
        }
    }
}
