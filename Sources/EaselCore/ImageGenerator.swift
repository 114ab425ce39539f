import Foundation

/// Progress of one generation: after `step` of `total` denoising steps, with a rough
/// preview of the image now and then.
public struct GenerationProgress: Sendable, Equatable {
    public var step: Int
    public var total: Int
    public var preview: Preview?

    public struct Preview: Sendable, Equatable, Codable {
        public var format: ImageFormat
        public var width: Int
        public var height: Int
        public var data: Data

        public init(format: ImageFormat, width: Int, height: Int, data: Data) {
            self.format = format
            self.width = width
            self.height = height
            self.data = data
        }
    }

    public init(step: Int, total: Int, preview: Preview? = nil) {
        self.step = step
        self.total = total
        self.preview = preview
    }
}

/// An encoded image an engine produced.
public struct GeneratedImage: Sendable {
    public var seed: UInt64
    public var format: ImageFormat
    public var width: Int
    public var height: Int
    public var data: Data

    public init(seed: UInt64, format: ImageFormat, width: Int, height: Int, data: Data) {
        self.seed = seed
        self.format = format
        self.width = width
        self.height = height
        self.data = data
    }
}

/// Which runner served a generation.
public struct RunnerInfo: Codable, Sendable, Equatable {
    public var pid: Int32?
    public var device: String?
    /// Loads of the model since the server started: 1 while its first runner lives.
    public var loadCount: Int

    public init(pid: Int32?, device: String?, loadCount: Int) {
        self.pid = pid
        self.device = device
        self.loadCount = loadCount
    }
}

public struct GenerationOutput: Sendable {
    public var images: [GeneratedImage]
    public var loadSeconds: Double
    public var engineSeconds: Double
    public var runner: RunnerInfo

    public init(images: [GeneratedImage], loadSeconds: Double, engineSeconds: Double, runner: RunnerInfo) {
        self.images = images
        self.loadSeconds = loadSeconds
        self.engineSeconds = engineSeconds
        self.runner = runner
    }
}

/// What the scheduler hands validated work to. Cancelling the calling task stops the
/// generation at the engine's next step boundary with an ``EaselError`` `cancelled`.
public protocol ImageGenerator: Sendable {
    /// Generates `specs` in one engine call; they share everything but their prompts and
    /// seeds (``GenerationSpec/canShareEngineCall(with:)``). Output `i` and the progress
    /// reported with member `i` belong to `specs[i]`.
    func generate(
        _ specs: [GenerationSpec], previewEvery: Int,
        onProgress: @escaping @Sendable (_ member: Int, GenerationProgress) -> Void
    ) async throws -> [GenerationOutput]

    /// The most images one engine call for this model may hold when jobs are merged;
    /// 1 turns merging off.
    func mergeLimit(for modelID: String) async -> Int
}
