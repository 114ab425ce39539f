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
    /// The engine of the loaded runner.
    public var engine: String?
    public var device: String?
    public var dtype: String?
    /// Loads of this model since the server started; 1 while the first runner lives.
    public var loadCount = 0
    public var memoryBytes: Int64?
    public var lastUsed: Date?
    /// When the current load began, while `state` is `loading`.
    public var loadingSince: Date?
    /// Seconds the model stays loaded while idle; nil keeps it loaded.
    public var keepAlive: Double?
    /// When an idle model will be unloaded, if nothing uses it before.
    public var expiresAt: Date? {
        guard state == .idle, let keepAlive, let lastUsed else { return nil }
        return lastUsed.addingTimeInterval(keepAlive)
    }
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
    /// Seconds the last load spent on its warm-up generation (part of the load); nil
    /// when `--no-warm-up` skipped it.
    public var warmupSeconds: Double?
}

/// One model and the runner that serves it. Whoever uses the runner (a generation, a
/// load, an unload) first takes a turn, in arrival order, so an unload never interrupts
/// a running job; a runner that is lost is replaced on the next request.
actor ModelWorker {
    let entry: ModelEntry
    private let launcher: @Sendable () async throws -> (RunnerLaunch, Runner.Timing)
    private let settings: Settings
    private let logger: Logger
    private var runner: Runner?
    /// How requests that name no engine get the model loaded (`POST /v1/models/{id}/load` changes it).
    private(set) var loadOptions: LoadOptions
    /// How the current runner loaded it.
    private var runnerOptions: LoadOptions?
    /// What the current runner's engine said it serves.
    private(set) var hello: RunnerHello?
    private var runtime = ModelRuntime()
    private let turns = TurnQueue()

    init(
        entry: ModelEntry, loadOptions: LoadOptions, keepAlive: Double?, settings: Settings, logger: Logger,
        launcher: @escaping @Sendable () async throws -> (RunnerLaunch, Runner.Timing)
    ) {
        self.entry = entry
        self.loadOptions = loadOptions
        runtime.keepAlive = keepAlive
        self.settings = settings
        self.logger = logger
        self.launcher = launcher
    }

    var snapshot: ModelRuntime { runtime }

    /// Whether a live runner holds the model loaded with `options`; ask while holding the turn.
    func isLoaded(with options: LoadOptions) async -> Bool {
        guard let runner, runnerOptions == options else { return false }
        return await runner.isAlive
    }

    /// The options a request for `engine` loads with: the model's own when it names none
    /// or the model's engine, else that engine's defaults from the settings.
    func options(for engine: EngineKind?) -> LoadOptions {
        guard let engine, engine != loadOptions.engine else { return loadOptions }
        return settings.loadOptions(engine: engine)
    }

    /// Makes `options` the model's own; the caller holds the turn and has loaded with them.
    func adopt(_ options: LoadOptions) {
        loadOptions = options
    }

    /// Whether a runner is loaded and nobody holds a turn: an unload now would interrupt nothing.
    var isIdle: Bool {
        get async {
            guard runner != nil else { return false }
            return await !turns.isBusy
        }
    }

    func setKeepAlive(_ seconds: Double?) {
        runtime.keepAlive = seconds
    }

    /// Loads the model unless a live runner already holds it; the caller holds the turn.
    /// Returns the seconds spent loading.
    @discardableResult
    func loadHoldingTurn(_ options: LoadOptions) async throws -> Double {
        try await ensureRunner(options).1
    }

    /// Generates `specs` in one engine call (see ``ImageGenerator``) with the model loaded
    /// with `options`; the caller holds the turn.
    func generateHoldingTurn(
        _ specs: [GenerationSpec], options: LoadOptions, loraPaths: [String: String], previewEvery: Int,
        onProgress: @escaping @Sendable (_ member: Int, GenerationProgress) -> Void
    ) async throws -> [GenerationOutput] {
        let spec = specs[0]  // merged specs share the sampler and the steps
        let (runner, loadSeconds) = try await ensureRunner(options)
        try Task.checkCancellation()
        let samplers = hello?.samplers ?? []
        guard samplers.contains(spec.sampler) else {
            throw EaselError.invalid(
                "sampler", "'\(spec.sampler)' is not available in \(options.engine.rawValue); choose one of: \(samplers.joined(separator: ", "))"
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
            let result = try await runner.generate(specs, loraPaths: loraPaths, previewEvery: previewEvery) { member, progress in
                onProgress(member, progress)
                if member == 0 { Task { await self.progressed(step: progress.step, total: progress.total) } }
            }
            let info = RunnerInfo(pid: runner.pid, device: runtime.device, loadCount: runtime.loadCount)
            return result.images.map { images in
                GenerationOutput(
                    images: images.map {
                        GeneratedImage(seed: $0.seed, format: $0.format, width: $0.width, height: $0.height, data: $0.data)
                    },
                    loadSeconds: loadSeconds, engineSeconds: result.engineSeconds, runner: info
                )
            }
        } catch {
            await dropIfLost(runner)
            throw error
        }
    }

    /// Stops the runner now: a generation in flight fails. Callers hold the turn, except
    /// at shutdown, where the running job is kept to run again after the next start.
    func stopRunner() async {
        guard let runner else { return }
        self.runner = nil
        runnerOptions = nil
        runtime = ModelRuntime().keepingHistory(of: runtime)
        logger.notice("unloaded model \(entry.id) (runner \(runner.pid))")
        await runner.shutdown()
    }

    /// Unloads unless someone holds or waits for a turn; says whether it did.
    func unloadIfIdle() async -> Bool {
        guard await turns.tryTake() else { return false }
        await stopRunner()
        await turns.end()
        return true
    }

    /// Unloads when idle longer than its keep-alive; says whether it did.
    func unloadIfExpired(now: Date) async -> Bool {
        guard let expiresAt = runtime.expiresAt, expiresAt <= now else { return false }
        return await unloadIfIdle()
    }

    private func ensureRunner(_ options: LoadOptions) async throws -> (Runner, Double) {
        if let runner, await runner.isAlive {
            if runnerOptions == options { return (runner, 0) }
            // Another engine or weight type: one runner serves one way of loading the model.
            await stopRunner()
        }
        if let lost = runner { await dropIfLost(lost) }
        runtime.state = .loading
        runtime.loadingSince = Date()
        defer { runtime.loadingSince = nil }
        let clock = ContinuousClock()
        let start = clock.now
        var (launch, timing) = try await launcher()
        launch.arguments += ["--engine", options.engine.rawValue]
        let started: Runner
        let hello: RunnerHello
        do {
            (started, hello) = try await Runner.start(launch, timing: timing, logger: logger)
        } catch {
            runtime.state = .unloaded
            throw error
        }
        do {
            let loaded = try await started.load(
                entry, options: options, device: settings.device, threads: settings.runnerThreads, warmUp: settings.warmUp
            )
            runner = started
            runnerOptions = options
            self.hello = hello
            runtime.state = .idle
            runtime.lastUsed = Date()
            runtime.runnerPid = started.pid
            runtime.engine = options.engine.rawValue
            runtime.device = loaded.device
            runtime.dtype = loaded.dtype
            runtime.memoryBytes = loaded.memoryBytes
            runtime.gpuMemoryBytes = loaded.gpuMemoryBytes
            runtime.warmupSeconds = loaded.warmupSeconds
            runtime.loadCount += 1
            runtime.lastLoadSeconds = (clock.now - start).seconds
            runtime.loadSecondsTotal += (clock.now - start).seconds
            logger.notice("loaded model \(entry.id) with \(options.engine.rawValue) (\(loaded.dtype)) in runner \(started.pid) on \(loaded.device) in \(String(format: "%.1f", loaded.loadSeconds)) s")
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
        runnerOptions = nil
        runtime = ModelRuntime().keepingHistory(of: runtime)
        runtime.restarts += 1
    }

    private func progressed(step: Int, total: Int) {
        guard runtime.state == .generating else { return }
        runtime.step = step
        runtime.totalSteps = total
    }

    func takeTurn() async {
        runtime.waiting += 1
        await turns.take()
        runtime.waiting -= 1
    }

    func endTurn() async {
        await turns.end()
    }
}

extension ModelWorker {
    /// A worker whose runners start from `environment` with the load options, timeouts and
    /// keep-alive of `settings`.
    init(entry: ModelEntry, settings: Settings, environment: RunnerEnvironment, logger: Logger) {
        let timing = Runner.Timing(
            heartbeatTimeout: .seconds(settings.runnerHeartbeatTimeout), loadTimeout: .seconds(settings.runnerLoadTimeout)
        )
        self.init(
            entry: entry, loadOptions: settings.loadOptions(for: entry), keepAlive: settings.keepAlive < 0 ? nil : settings.keepAlive,
            settings: settings, logger: logger
        ) {
            (try await environment.prepare(), timing)
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
    /// This runtime with what outlives a runner (counters, keep-alive, waiting requests)
    /// copied from `previous`.
    func keepingHistory(of previous: ModelRuntime) -> ModelRuntime {
        var kept = self
        kept.loadCount = previous.loadCount
        kept.lastUsed = previous.lastUsed
        kept.keepAlive = previous.keepAlive
        kept.waiting = previous.waiting
        kept.restarts = previous.restarts
        kept.lastLoadSeconds = previous.lastLoadSeconds
        kept.warmupSeconds = previous.warmupSeconds
        kept.loadSecondsTotal = previous.loadSecondsTotal
        return kept
    }
}
