import EaselCore
import Foundation
import Logging

/// What a model's runner is doing, for listings and status.
public struct ModelRuntime: Sendable, Encodable, Equatable {
    public enum State: String, Sendable, Encodable {
        case unloaded, loading, idle, generating
    }

    public var state: State = .unloaded
    public var runnerPid: Int32?
    public var device: String?
    public var dtype: String?
    /// Loads of this model since the server started; 1 while the first runner lives.
    public var loadCount = 0
    public var memoryBytes: Int64?
    public var lastUsed: Date?
    public var step: Int?
    public var totalSteps: Int?
    /// Requests waiting for this model's runner.
    public var waiting = 0
    /// CUDA memory the runner reported after loading; nil on CPU.
    public var gpuMemoryBytes: Int64?
    /// Runners of this model lost (crashed, killed, hung) since the server started.
    public var restarts = 0
    /// Seconds the last load took, and all loads together.
    public var lastLoadSeconds: Double?
    public var loadSecondsTotal = 0.0
}

/// One model and the runner that serves it. Requests take turns in arrival order; a
/// runner that is lost is replaced on the next request.
actor ModelWorker {
    let entry: ModelEntry
    private let launcher: @Sendable () async throws -> (RunnerLaunch, Runner.Timing)
    private let settings: Settings
    private let logger: Logger
    private var runner: Runner?
    /// The samplers the current runner's engine serves.
    private var samplers: [String] = []
    private var runtime = ModelRuntime()
    private var busy = false
    private var turnWaiters: [CheckedContinuation<Void, Never>] = []

    init(entry: ModelEntry, settings: Settings, logger: Logger, launcher: @escaping @Sendable () async throws -> (RunnerLaunch, Runner.Timing)) {
        self.entry = entry
        self.settings = settings
        self.logger = logger
        self.launcher = launcher
    }

    var snapshot: ModelRuntime { runtime }

    /// Loads the model unless a live runner already holds it; returns the seconds spent loading.
    @discardableResult
    func load() async throws -> Double {
        await takeTurn()
        defer { endTurn() }
        return try await ensureRunner().1
    }

    func generate(
        _ spec: GenerationSpec, previewEvery: Int, onProgress: @escaping @Sendable (GenerationProgress) -> Void
    ) async throws -> GenerationOutput {
        await takeTurn()
        defer { endTurn() }
        let (runner, loadSeconds) = try await ensureRunner()
        try Task.checkCancellation()
        guard samplers.contains(spec.sampler) else {
            throw EaselError.invalid(
                "sampler", "'\(spec.sampler)' is not available in this engine; choose one of: \(samplers.joined(separator: ", "))"
            )
        }
        runtime.state = .generating
        runtime.step = 0
        runtime.totalSteps = spec.steps
        defer {
            runtime.state = self.runner == nil ? .unloaded : .idle
            runtime.step = nil
            runtime.totalSteps = nil
            runtime.lastUsed = Date()
        }
        do {
            let result = try await runner.generate(spec, previewEvery: previewEvery) { progress in
                onProgress(progress)
                Task { await self.progressed(step: progress.step, total: progress.total) }
            }
            return GenerationOutput(
                images: result.images.map {
                    GeneratedImage(seed: $0.seed, format: $0.format, width: $0.width, height: $0.height, data: $0.data)
                },
                loadSeconds: loadSeconds, engineSeconds: result.engineSeconds,
                runner: RunnerInfo(pid: runner.pid, device: runtime.device, loadCount: runtime.loadCount)
            )
        } catch {
            await dropIfLost(runner)
            throw error
        }
    }

    func unload() async {
        guard let runner else { return }
        self.runner = nil
        runtime = ModelRuntime(loadCount: runtime.loadCount, lastUsed: runtime.lastUsed).keepingHistory(of: runtime)
        await runner.shutdown()
    }

    private func ensureRunner() async throws -> (Runner, Double) {
        if let runner, await runner.isAlive { return (runner, 0) }
        if let lost = runner { await dropIfLost(lost) }
        runtime.state = .loading
        let clock = ContinuousClock()
        let start = clock.now
        let (launch, timing) = try await launcher()
        let started: Runner
        let hello: RunnerHello
        do {
            (started, hello) = try await Runner.start(launch, timing: timing, logger: logger)
        } catch {
            runtime.state = .unloaded
            throw error
        }
        do {
            let loaded = try await started.load(entry, device: settings.device, threads: settings.runnerThreads)
            runner = started
            samplers = hello.samplers
            runtime.state = .idle
            runtime.runnerPid = started.pid
            runtime.device = loaded.device
            runtime.dtype = loaded.dtype
            runtime.memoryBytes = loaded.memoryBytes
            runtime.gpuMemoryBytes = loaded.gpuMemoryBytes
            runtime.loadCount += 1
            runtime.lastLoadSeconds = (clock.now - start).seconds
            runtime.loadSecondsTotal += (clock.now - start).seconds
            logger.notice("loaded model \(entry.id) in runner \(started.pid) on \(loaded.device) in \(String(format: "%.1f", loaded.loadSeconds)) s")
            return (started, (clock.now - start).seconds)
        } catch {
            runtime.state = .unloaded
            await started.shutdown(grace: .seconds(2))
            throw error
        }
    }

    private func dropIfLost(_ lost: Runner) async {
        guard await !lost.isAlive, runner === lost else { return }
        logger.warning("runner \(lost.pid) of model \(entry.id) is gone; the next request starts a new one")
        runner = nil
        runtime = ModelRuntime(loadCount: runtime.loadCount, lastUsed: runtime.lastUsed, waiting: runtime.waiting).keepingHistory(of: runtime)
        runtime.restarts += 1
    }

    private func progressed(step: Int, total: Int) {
        guard runtime.state == .generating else { return }
        runtime.step = step
        runtime.totalSteps = total
    }

    private func takeTurn() async {
        guard busy else {
            busy = true
            return
        }
        runtime.waiting += 1
        await withCheckedContinuation { turnWaiters.append($0) }
        runtime.waiting -= 1
    }

    private func endTurn() {
        if turnWaiters.isEmpty {
            busy = false
        } else {
            turnWaiters.removeFirst().resume()
        }
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

extension ModelRuntime {
    /// This runtime with the counters that outlive a runner copied from `previous`.
    func keepingHistory(of previous: ModelRuntime) -> ModelRuntime {
        var kept = self
        kept.restarts = previous.restarts
        kept.lastLoadSeconds = previous.lastLoadSeconds
        kept.loadSecondsTotal = previous.loadSecondsTotal
        return kept
    }
}
