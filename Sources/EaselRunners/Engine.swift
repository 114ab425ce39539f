import EaselCore
import Foundation
import Logging
import ServiceLifecycle

/// Whether the server can generate now, and if not, why.
public enum Readiness: Sendable, Equatable {
    case starting(String)
    case ready
    case failed(String)
}

/// A model in the folder together with what its runner is doing.
public struct ModelListing: Sendable {
    public let entry: ModelEntry
    public let runtime: ModelRuntime
    public let isDefault: Bool
    /// How a request that names no engine gets the model loaded.
    public let loadOptions: LoadOptions
}

/// The engine side of the server: the models folder, one worker per model, and the
/// runner environment. It runs as a service: at start it sets the environment up,
/// creates the demo model when the folder is empty and loads the default model; while it
/// runs it unloads models whose keep-alive has passed; at shutdown it stops every runner.
///
/// Several models may be loaded at once, within `--max-loaded-models` and
/// `--memory-budget`; loading one more unloads the least recently used one, waiting for
/// its running job to end first: a running job is never interrupted to make room.
public actor Engine: Service, ImageGenerator {
    public static let demoModelID = "demo-tiny-random"

    public nonisolated let settings: Settings
    public nonisolated let catalog: ModelCatalog
    public nonisolated let loras: LoraCatalog
    public nonisolated let parameters: GenerationParameters
    private nonisolated let environment: RunnerEnvironment
    private let logger: Logger
    private var entries: [ModelEntry] = []
    private var workers: [String: ModelWorker] = [:]
    /// Loads happen one at a time, so two cannot both take the same room.
    private let loadTurn = TurnQueue()
    public private(set) var readiness = Readiness.starting("starting")
    /// What the last runner of each engine said it serves.
    public private(set) var runnerHellos: [EngineKind: RunnerHello] = [:]

    public init(settings: Settings, parameters: GenerationParameters, logger: Logger) {
        self.settings = settings
        self.catalog = ModelCatalog(folder: settings.modelsURL)
        self.loras = LoraCatalog(folder: settings.lorasURL)
        self.parameters = parameters
        self.environment = RunnerEnvironment(settings: settings, logger: logger)
        self.logger = logger
    }

    public func run() async throws {
        await start()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.unloadExpiredModels() }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        await stop()
    }

    // MARK: - Models

    /// Rescans the models folder.
    @discardableResult
    public func refresh() -> [ModelEntry] {
        entries = catalog.scan()
        return entries
    }

    /// The model with this id; a miss rescans the folder once, for files added since.
    public func resolve(_ id: String) throws -> ModelEntry {
        if let entry = try? catalog.resolve(id, in: entries) { return entry }
        return try catalog.resolve(id, in: refresh())
    }

    /// The model a request without `model` gets.
    public func defaultModelID() -> String? {
        settings.defaultModel ?? entries.first { $0.problem == nil }?.id
    }

    public func listModels() async -> [ModelListing] {
        let defaultID = defaultModelID()
        var listings: [ModelListing] = []
        for entry in entries {
            listings.append(await listing(of: entry, isDefault: entry.id == defaultID))
        }
        return listings
    }

    public func listing(of modelID: String) async throws -> ModelListing {
        let entry = try resolve(modelID)
        return await listing(of: entry, isDefault: entry.id == defaultModelID())
    }

    private func listing(of entry: ModelEntry, isDefault: Bool) async -> ModelListing {
        let worker = workers[entry.id]
        return ModelListing(
            entry: entry, runtime: await worker?.snapshot ?? ModelRuntime(), isDefault: isDefault,
            loadOptions: await worker?.loadOptions ?? settings.loadOptions(for: entry)
        )
    }

    /// What a load request may change about how a model loads; nil keeps the current value.
    public struct LoadChange: Sendable {
        public var engine: String?
        public var weightType: String?
        public var vaeTiling: Bool?

        public init(engine: String? = nil, weightType: String? = nil, vaeTiling: Bool? = nil) {
            self.engine = engine
            self.weightType = weightType
            self.vaeTiling = vaeTiling
        }
    }

    /// Loads a model (within the budget) and sets how long it stays loaded while idle:
    /// `keepAlive` seconds, -1 for as long as it need not make room, nil for the setting.
    /// `change` picks the engine and load options, which become the model's own for
    /// requests that name no engine.
    public func load(_ modelID: String, keepAlive: Double?, change: LoadChange = LoadChange()) async throws -> ModelListing {
        let entry = try resolve(modelID)
        let worker = worker(for: entry)
        let engine = try change.engine.map { try EngineKind.named($0, field: "engine") }
        var options = await worker.options(for: engine)
        if let weightType = change.weightType { options.weightType = weightType }
        if let vaeTiling = change.vaeTiling { options.vaeTiling = vaeTiling }
        options = try options.checked(for: entry)
        await worker.takeTurn()
        do {
            try await ensureLoaded(worker, options)
            await worker.adopt(options)
            if let keepAlive { await worker.setKeepAlive(keepAlive < 0 ? nil : keepAlive) }
            await worker.endTurn()
        } catch {
            await worker.endTurn()
            throw error
        }
        return try await listing(of: entry.id)
    }

    /// Unloads a model; refuses while it generates or has jobs waiting for it.
    public func unload(_ modelID: String) async throws -> ModelListing {
        let entry = try resolve(modelID)
        if let worker = workers[entry.id], await !worker.unloadIfIdle() {
            throw EaselError(
                .modelBusy, "model '\(entry.id)' is generating; unload it when its jobs are done (GET /v1/models shows its state)",
                field: "model"
            )
        }
        return try await listing(of: entry.id)
    }

    // MARK: - Generation

    /// Resolves the preset, defaults, model and LoRAs of `request` and validates it
    /// against the server's limits.
    public func prepare(_ request: GenerationRequest) async throws -> GenerationSpec {
        if case .starting(let phase) = readiness {
            throw EaselError(.notReady, "the server is starting (\(phase)); retry when GET /health answers 200")
        }
        let (resolved, defaults) = try await parameters.resolve(request)
        guard let modelID = resolved.model ?? defaultModelID() else {
            throw EaselError(.modelNotFound, "no model is available; put a checkpoint in \(settings.modelsURL.path)", field: "model")
        }
        let entry = try resolve(modelID)
        let engine = try resolved.engine.map { try EngineKind.named($0, field: "engine") }
        let options = try await worker(for: entry).options(for: engine).checked(for: entry)
        var spec = try resolved.validated(modelID: entry.id, limits: settings.limits, defaults: defaults)
        spec.engine = options.engine.rawValue
        for (index, lora) in spec.loras.enumerated() {
            _ = try loras.resolve(lora.name, field: "loras[\(index)].name")
        }
        return spec
    }

    public func generate(
        _ specs: [GenerationSpec], previewEvery: Int, onProgress: @escaping @Sendable (_ member: Int, GenerationProgress) -> Void
    ) async throws -> [GenerationOutput] {
        // Merged specs share the model, the engine and the LoRAs.
        let spec = specs[0]
        let entry = try resolve(spec.modelID)
        let worker = worker(for: entry)
        let options = try await worker.options(for: spec.engine.flatMap(EngineKind.init(rawValue:))).checked(for: entry)
        let loraPaths = try loras.paths(of: spec.loras)
        await worker.takeTurn()
        do {
            try await ensureLoaded(worker, options)
            let output = try await worker.generateHoldingTurn(
                specs, options: options, loraPaths: loraPaths, previewEvery: previewEvery, onProgress: onProgress
            )
            await worker.endTurn()
            readiness = .ready
            return output
        } catch {
            await worker.endTurn()
            throw error
        }
    }

    /// `--max-batch-size`, or when it is 0 (automatic), ``JobMerging/automaticLimit`` for a
    /// model on CUDA and 1 (no merging) elsewhere: on a CPU a merged call takes about as
    /// long as its jobs one after another. 1 as well while the model's runner is not known
    /// to take merged calls (not loaded, or an engine without the `merged_jobs` feature).
    public func mergeLimit(for modelID: String) async -> Int {
        guard let worker = workers[modelID], await worker.hello?.features?.contains("merged_jobs") == true else { return 1 }
        if settings.maxBatchSize > 0 { return settings.maxBatchSize }
        return await worker.snapshot.device == "cuda" ? JobMerging.automaticLimit : 1
    }

    public nonisolated var imageConverter: ImageConverter { ImageConverter(environment: environment) }

    // MARK: - Loading within the budget

    private func worker(for entry: ModelEntry) -> ModelWorker {
        if let worker = workers[entry.id], worker.entry == entry { return worker }
        let worker = ModelWorker(entry: entry, settings: settings, environment: environment, logger: logger)
        workers[entry.id] = worker
        return worker
    }

    /// Loads `worker`'s model with `options`, first unloading others until it fits; the
    /// caller holds `worker`'s turn.
    private func ensureLoaded(_ worker: ModelWorker, _ options: LoadOptions) async throws {
        guard await !worker.isLoaded(with: options) else { return }
        await loadTurn.take()
        do {
            if await !worker.isLoaded(with: options) {
                try await makeRoom(for: worker)
                try await worker.loadHoldingTurn(options)
                runnerHellos[options.engine] = await worker.hello
            }
            await loadTurn.end()
        } catch {
            await loadTurn.end()
            throw error
        }
    }

    private func makeRoom(for target: ModelWorker) async throws {
        let budget = settings.memoryBudget
        let needed = target.entry.sizeBytes
        if budget > 0, needed > budget {
            throw EaselError(
                .overMemoryBudget,
                "model '\(target.entry.id)' needs about \(needed) bytes, more than the whole memory budget (\(budget) bytes, --memory-budget)",
                field: "model"
            )
        }
        while true {
            var loaded: [(worker: ModelWorker, runtime: ModelRuntime)] = []
            for worker in workers.values where worker !== target {
                let runtime = await worker.snapshot
                if runtime.state != .unloaded { loaded.append((worker, runtime)) }
            }
            let used = loaded.reduce(Int64(0)) { $0 + ($1.runtime.memoryBytes ?? $1.worker.entry.sizeBytes) }
            let fits = loaded.count < settings.maxLoadedModels && (budget == 0 || used + needed <= budget)
            if fits { return }
            // Least recently used first; one whose turn is free can go now, another only
            // once its running job has ended.
            let byAge = loaded.sorted { ($0.runtime.lastUsed ?? .distantPast) < ($1.runtime.lastUsed ?? .distantPast) }
            var unloadedOne = false
            for candidate in byAge where await candidate.worker.isIdle {
                if await candidate.worker.unloadIfIdle() {
                    unloadedOne = true
                    break
                }
            }
            if !unloadedOne, let oldest = byAge.first {
                await oldest.worker.takeTurn()
                await oldest.worker.stopRunner()
                await oldest.worker.endTurn()
            }
            try Task.checkCancellation()
        }
    }

    private func unloadExpiredModels() async {
        while !Task.isCancelled {
            for worker in workers.values {
                _ = await worker.unloadIfExpired(now: Date())
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    // MARK: - Start and stop

    private func start() async {
        do {
            readiness = .starting("reading saved defaults and presets")
            try await parameters.restore()
            readiness = .starting("setting up the runner environment")
            _ = try await environment.prepare()
            if settings.demoModel, refresh().isEmpty {
                readiness = .starting("creating the demo model")
                try await createDemoModel()
            }
            refresh()
            if settings.preload, let modelID = defaultModelID() {
                readiness = .starting("loading model \(modelID)")
                _ = try await load(modelID, keepAlive: nil)
            }
            readiness = .ready
            logger.notice("ready")
        } catch {
            let reason = (error as? EaselError)?.message ?? "\(error)"
            logger.error("start-up failed: \(reason)")
            readiness = .failed(reason)
        }
    }

    private func createDemoModel() async throws {
        let folder = settings.modelsURL
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        logger.notice("the models folder is empty: creating \(Self.demoModelID), a tiny random-weight model that draws noise, for trying the API")
        try await environment.runTool("easel_runner.tiny", ["--out", folder.appendingPathComponent(Self.demoModelID).path])
    }

    private func stop() async {
        for worker in workers.values {
            await worker.stopRunner()
        }
        workers = [:]
    }
}

