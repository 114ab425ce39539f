import EaselCore
import Foundation
import Logging

/// One model in its own runner, used by one caller without a server (`easel generate`):
/// load, generate, close. It holds the worker's turn from `load` to `close`, since
/// nothing else shares the runner.
public actor StandaloneModel {
    private let worker: ModelWorker
    private let loras: LoraCatalog
    private var holdsTurn = false

    public init(entry: ModelEntry, settings: Settings, environment: RunnerEnvironment, logger: Logger) {
        worker = ModelWorker(entry: entry, settings: settings, environment: environment, logger: logger)
        loras = LoraCatalog(folder: settings.lorasURL)
    }

    /// Starts the runner and loads the model for `engine` (nil: the model's own); returns
    /// the seconds that took.
    public func load(engine: EngineKind? = nil) async throws -> Double {
        if !holdsTurn {
            await worker.takeTurn()
            holdsTurn = true
        }
        return try await worker.loadHoldingTurn(try await options(for: engine))
    }

    public func generate(
        _ spec: GenerationSpec, onProgress: @escaping @Sendable (GenerationProgress) -> Void
    ) async throws -> GenerationOutput {
        let loraPaths = try loras.paths(of: spec.loras)
        let engine = spec.engine.flatMap(EngineKind.init(rawValue:))
        _ = try await load(engine: engine)
        let outputs = try await worker.generateHoldingTurn(
            [spec], options: try await options(for: engine), loraPaths: loraPaths, previewEvery: 0
        ) { _, progress in
            onProgress(progress)
        }
        return outputs[0]
    }

    private func options(for engine: EngineKind?) async throws -> LoadOptions {
        try await worker.options(for: engine).checked(for: worker.entry)
    }

    /// Stops the runner.
    public func close() async {
        await worker.stopRunner()
        if holdsTurn {
            await worker.endTurn()
            holdsTurn = false
        }
    }
}
