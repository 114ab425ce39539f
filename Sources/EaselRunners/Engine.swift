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
}

/// The engine side of the server: the models folder, one worker per model, and the
/// runner environment. It runs as a service: at start it sets the environment up,
/// creates the demo model when the folder is empty and loads the default model; at
/// shutdown it stops every runner.
public actor Engine: Service, ImageGenerator {
    public static let demoModelID = "demo-tiny-random"

    public nonisolated let settings: Settings
    public nonisolated let catalog: ModelCatalog
    private nonisolated let environment: RunnerEnvironment
    private let logger: Logger
    private var workers: [String: ModelWorker] = [:]
    public private(set) var readiness = Readiness.starting("starting")

    public init(settings: Settings, logger: Logger) {
        self.settings = settings
        self.catalog = ModelCatalog(folder: settings.modelsURL)
        self.environment = RunnerEnvironment(settings: settings, logger: logger)
        self.logger = logger
    }

    public func run() async throws {
        await start()
        try? await gracefulShutdown()
        await stop()
    }

    /// The model a request without `model` gets.
    public nonisolated func defaultModelID() -> String? {
        settings.defaultModel ?? catalog.scan().first { $0.problem == nil }?.id
    }

    /// Resolves the model and validates `request` against the server's limits.
    public func prepare(_ request: GenerationRequest) throws -> GenerationSpec {
        if case .starting(let phase) = readiness {
            throw EaselError(.notReady, "the server is starting (\(phase)); retry when GET /health answers 200")
        }
        guard let modelID = request.model ?? defaultModelID() else {
            throw EaselError(.modelNotFound, "no model is available; put a checkpoint in \(settings.modelsURL.path)", field: "model")
        }
        let entry = try catalog.resolve(modelID)
        return try request.validated(modelID: entry.id, limits: settings.limits)
    }

    public func generate(
        _ spec: GenerationSpec, previewEvery: Int, onProgress: @escaping @Sendable (GenerationProgress) -> Void
    ) async throws -> GenerationOutput {
        // `prepare` resolved the model already; rescanning the folder (headers, sizes) per job is waste.
        let worker = try workers[spec.modelID] ?? worker(for: catalog.resolve(spec.modelID))
        let output = try await worker.generate(spec, previewEvery: previewEvery, onProgress: onProgress)
        readiness = .ready
        return output
    }

    public nonisolated var imageConverter: ImageConverter { ImageConverter(environment: environment) }

    public func listModels() async -> [ModelListing] {
        let defaultID = defaultModelID()
        var listings: [ModelListing] = []
        for entry in catalog.scan() {
            let runtime = await workers[entry.id]?.snapshot ?? ModelRuntime()
            listings.append(ModelListing(entry: entry, runtime: runtime, isDefault: entry.id == defaultID))
        }
        return listings
    }

    private func worker(for entry: ModelEntry) -> ModelWorker {
        if let worker = workers[entry.id], worker.entry == entry { return worker }
        let environment = self.environment
        let timing = Runner.Timing(
            heartbeatTimeout: .seconds(settings.runnerHeartbeatTimeout), loadTimeout: .seconds(settings.runnerLoadTimeout)
        )
        let worker = ModelWorker(entry: entry, settings: settings, logger: logger) {
            (try await environment.prepare(), timing)
        }
        workers[entry.id] = worker
        return worker
    }

    private func start() async {
        do {
            readiness = .starting("setting up the runner environment")
            _ = try await environment.prepare()
            if settings.demoModel, catalog.scan().isEmpty {
                readiness = .starting("creating the demo model")
                try await createDemoModel()
            }
            if settings.preload, let modelID = defaultModelID() {
                readiness = .starting("loading model \(modelID)")
                try await worker(for: try catalog.resolve(modelID)).load()
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
        for worker in workers.values { await worker.unload() }
        workers = [:]
    }
}
