import ArgumentParser
import Foundation

/// Every server setting, declared once. Each property is a command-line flag
/// (`--max-steps`), an environment variable (`EASEL_MAX_STEPS`) and a key of the JSON
/// config file (`max_steps`); a flag beats the environment, which beats the file, which
/// beats the default. ``SettingsSources`` turns the other two sources into flags.
public struct Settings: ParsableArguments, Sendable {
    @Option(help: "JSON config file whose keys are these option names in snake_case.")
    public var config: String?

    @Option(help: "Address to listen on. Use 0.0.0.0 to accept other machines.")
    public var host = "127.0.0.1"

    @Option(help: "TCP port; 7860 is AUTOMATIC1111's, so its clients connect unchanged.")
    public var port = 7860

    @Option(help: "Folder scanned for models (diffusers folders, .safetensors, .ckpt, .gguf).")
    public var modelsDir = "./models"

    @Option(help: "Folder for Easel's own state: the runner virtualenv, jobs and images.")
    public var dataDir = "./.easel"

    @Option(help: "Model used when a request names none; the first model found when unset.")
    public var defaultModel: String?

    @Flag(inversion: .prefixedNo, help: "Load the default model at start-up.")
    public var preload = true

    @Option(help: "Most models loaded at once; loading one more unloads the least recently used idle one.")
    public var maxLoadedModels = 2

    @Option(help: "Most bytes all loaded models may use together (runner memory); 0 means no budget.")
    public var memoryBudget: Int64 = 0

    @Option(help: "Seconds an idle model stays loaded; -1 keeps it until it must make room, 0 unloads it after each job.")
    public var keepAlive = -1.0

    @Option(help: "Folder scanned for LoRA files (.safetensors) (default: <models-dir>/loras).")
    public var lorasDir: String?

    @Flag(inversion: .prefixedNo, help: "Create a tiny random-weight demo model when the models folder is empty.")
    public var demoModel = true

    @Option(help: "Largest width in pixels.")
    public var maxWidth = 2048

    @Option(help: "Largest height in pixels.")
    public var maxHeight = 2048

    @Option(help: "Largest width × height of one image.")
    public var maxPixels = 2048 * 2048

    @Option(help: "Largest number of denoising steps.")
    public var maxSteps = 150

    @Option(help: "Largest number of images in one request.")
    public var maxBatch = 8

    @Option(help: "Most images in one engine call when queued jobs that differ only in prompt and seed are merged; 1 turns merging off, 0 means 4 on CUDA and 1 otherwise.")
    public var maxBatchSize = 0

    @Option(help: "Longest prompt or negative prompt, in characters.")
    public var maxPromptLength = 4000

    @Option(help: "Largest request body, in bytes.")
    public var maxBodyBytes = 16 * 1024 * 1024

    @Option(help: "Most jobs waiting in the queue; further submissions get 429 with Retry-After.")
    public var maxQueue = 100

    @Option(help: "Send a rough preview image in job events every N steps; 0 turns previews off.")
    public var previewEvery = 5

    @Option(help: "Days finished jobs and their images are kept.")
    public var retentionDays = 7.0

    @Option(help: "Most bytes of stored images; beyond it the oldest finished jobs are deleted.")
    public var retentionMaxBytes: Int64 = 2 * 1024 * 1024 * 1024

    @Flag(inversion: .prefixedNo, help: "Cancel a synchronous request's job when its client disconnects.")
    public var cancelOnDisconnect = true

    @Option(help: "Secret that signs webhook deliveries (HMAC-SHA256); default: generated once and kept in the data folder.")
    public var webhookSecret: String?

    @Option(help: "Attempts to deliver a webhook before giving up.")
    public var webhookAttempts = 5

    @Option(help: "Seconds a shutdown waits for running jobs before stopping them (they run again after the next start).")
    public var shutdownGrace = 30.0

    @Option(help: "Python interpreter used to create the runner virtualenv.")
    public var python = "python3"

    @Option(help: "Runner virtualenv folder (default: <data-dir>/runner-venv).")
    public var runnerVenv: String?

    @Option(help: "Folder holding the runner's Python package (default: found beside the executable or in the working folder).")
    public var runnerSource: String?

    @Option(help: "Device for the engines: auto (CUDA when present), cpu or cuda.")
    public var device = "auto"

    @Option(help: "CPU threads per runner; 0 uses every core.")
    public var runnerThreads = 0

    @Flag(inversion: .prefixedNo, help: "Run one tiny generation when a model loads, so that the first request does not pay one-time costs.")
    public var warmUp = true
    @Option(help: "Engine for .safetensors and .ckpt checkpoints: diffusers, stable-diffusion.cpp, or auto (the faster one on this platform). Folders always use diffusers, .gguf files stable-diffusion.cpp.")
    public var defaultEngine = "auto"

    @Option(help: "Weight type models load with: auto (the engine's choice), f32, f16, or for stable-diffusion.cpp a quantization (q8_0, q5_0, q4_0, ...).")
    public var weightType = "auto"

    @Flag(inversion: .prefixedNo, help: "Decode images in tiles with stable-diffusion.cpp (less memory for large images, a little slower).")
    public var vaeTiling = false

    @Option(help: "Optional engine to install into the runner virtualenv as well: stable-diffusion.cpp (compiles for several minutes the first time); repeatable.")
    public var installEngine: [String] = []

    @Option(help: "Seconds a runner may leave a heartbeat unanswered before it is killed.")
    public var runnerHeartbeatTimeout = 60.0

    @Option(help: "Seconds a runner may take to start and load a model.")
    public var runnerLoadTimeout = 900.0

    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
    public var logLevel = "info"

    // MARK: Operations and security

    @Option(help: "Log format: text, or json (one JSON object a line).")
    public var logFormat = "text"

    @Option(help: "API key clients must send, as a Bearer token or an HTTP Basic password; repeat for several. None: no key needed.")
    public var apiKey: [String] = []

    @Option(help: "File with API keys, one a line (# starts a comment).")
    public var apiKeyFile: String?

    @Flag(inversion: .prefixedNo, help: "Require an API key for GET /metrics when keys are set.")
    public var metricsRequireKey = true

    @Option(help: "Requests a minute per API key (per client address without keys); 0: no limit.")
    public var rateLimit = 0.0

    @Option(help: "Requests a client may make at once before --rate-limit applies.")
    public var rateLimitBurst = 20

    @Option(help: "Most queued or running jobs per API key (per client address without keys); 0: only --max-queue.")
    public var maxQueuePerKey = 0

    @Option(help: "Origin allowed to call the API from a browser (CORS); repeat or separate with commas; * allows any. None: CORS closed.")
    public var corsOrigin: [String] = []

    @Flag(inversion: .prefixedNo, help: "Let browsers send credentials (cookies, HTTP auth) cross-origin; not allowed with --cors-origin *.")
    public var corsAllowCredentials = false

    @Option(help: "Seconds a request may take before it fails with 504 (its job is cancelled); 0: no limit. Streams are not limited.")
    public var requestTimeout = 0.0

    @Option(help: "Times a job runs again after its runner crashed or hung (0 to 3).")
    public var runnerCrashRetries = 0

    public init() {}

    public func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1-65535") }
        guard ["auto", "cpu", "cuda"].contains(device) else {
            throw ValidationError("--device must be auto, cpu or cuda")
        }
        let positive: [(String, Int)] = [
            ("--max-width", maxWidth), ("--max-height", maxHeight), ("--max-pixels", maxPixels),
            ("--max-steps", maxSteps), ("--max-batch", maxBatch),
            ("--max-prompt-length", maxPromptLength), ("--max-body-bytes", maxBodyBytes),
            ("--max-queue", maxQueue), ("--webhook-attempts", webhookAttempts), ("--max-loaded-models", maxLoadedModels),
        ]
        for (flag, value) in positive where value < 1 {
            throw ValidationError("\(flag) must be at least 1")
        }
        guard maxBatchSize >= 0 else { throw ValidationError("--max-batch-size must be 0 (automatic), 1 (off) or more") }
        guard memoryBudget >= 0 else { throw ValidationError("--memory-budget must be 0 (none) or more") }
        guard keepAlive >= 0 || keepAlive == -1 else { throw ValidationError("--keep-alive must be -1 (forever) or 0 or more seconds") }
        guard runnerThreads >= 0 else { throw ValidationError("--runner-threads must be 0 or more") }
        let engineNames = EngineKind.allCases.map(\.rawValue)
        guard defaultEngine == "auto" || engineNames.contains(defaultEngine) else {
            throw ValidationError("--default-engine must be auto, \(engineNames.joined(separator: " or "))")
        }
        let weightTypes = EngineKind.allCases.flatMap(\.weightTypes)
        guard weightTypes.contains(weightType) else {
            throw ValidationError("--weight-type must be one of \(Array(Set(weightTypes)).sorted().joined(separator: ", "))")
        }
        for engine in installEngine where EngineKind(rawValue: engine)?.optionalRequirements == nil {
            throw ValidationError("--install-engine '\(engine)' is not an optional engine; stable-diffusion.cpp is")
        }
        guard previewEvery >= 0 else { throw ValidationError("--preview-every must be 0 or more") }
        guard retentionDays > 0, retentionMaxBytes > 0 else { throw ValidationError("retention limits must be positive") }
        guard shutdownGrace >= 0 else { throw ValidationError("--shutdown-grace must be 0 or more") }
        guard runnerHeartbeatTimeout > 0, runnerLoadTimeout > 0 else {
            throw ValidationError("runner timeouts must be positive")
        }
        guard ["text", "json"].contains(logFormat) else { throw ValidationError("--log-format must be text or json") }
        guard rateLimit >= 0, rateLimitBurst >= 1 else {
            throw ValidationError("--rate-limit must be 0 or more and --rate-limit-burst at least 1")
        }
        guard maxQueuePerKey >= 0 else { throw ValidationError("--max-queue-per-key must be 0 or more") }
        guard requestTimeout >= 0 else { throw ValidationError("--request-timeout must be 0 or more") }
        guard (0...3).contains(runnerCrashRetries) else { throw ValidationError("--runner-crash-retries must be 0 to 3") }
        if corsAllowCredentials, corsOrigins.contains("*") {
            throw ValidationError("--cors-allow-credentials cannot go with --cors-origin *: name the origins")
        }
        for origin in corsOrigins where origin != "*" {
            guard let url = URL(string: origin), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil,
                url.path.isEmpty, !origin.hasSuffix("/")
            else {
                throw ValidationError("--cors-origin '\(origin)' must be an origin such as https://app.example.com (no path)")
            }
        }
    }

    public var limits: Limits {
        Limits(
            maxWidth: maxWidth, maxHeight: maxHeight, maxPixels: maxPixels, maxSteps: maxSteps,
            maxBatch: maxBatch, maxPromptLength: maxPromptLength
        )
    }

    /// The CORS origins, with comma-separated values split.
    public var corsOrigins: [String] {
        corsOrigin.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The engine `.safetensors` and `.ckpt` checkpoints get.
    public var checkpointEngine: EngineKind {
        EngineKind(rawValue: defaultEngine) ?? EngineKind.platformDefault
    }

    /// The options a model loads with unless its load request or a generation says
    /// otherwise. A weight type the engine lacks (`q8_0` for diffusers) falls back to auto.
    public func loadOptions(engine: EngineKind) -> LoadOptions {
        LoadOptions(engine: engine, weightType: engine.weightTypes.contains(weightType) ? weightType : "auto", vaeTiling: vaeTiling)
    }

    /// The options `entry` loads with unless a load request or a generation names an engine.
    public func loadOptions(for entry: ModelEntry) -> LoadOptions {
        loadOptions(engine: entry.defaultEngine(checkpointEngine: checkpointEngine))
    }

    public var modelsURL: URL { URL(fileURLWithPath: modelsDir).standardizedFileURL }
    public var lorasURL: URL {
        lorasDir.map { URL(fileURLWithPath: $0).standardizedFileURL } ?? modelsURL.appendingPathComponent("loras")
    }
    public var dataURL: URL { URL(fileURLWithPath: dataDir).standardizedFileURL }
    public var runnerVenvURL: URL {
        runnerVenv.map { URL(fileURLWithPath: $0).standardizedFileURL }
            ?? dataURL.appendingPathComponent("runner-venv")
    }
}

/// The limits a generation request is validated against.
public struct Limits: Sendable, Equatable {
    public var maxWidth: Int
    public var maxHeight: Int
    public var maxPixels: Int
    public var maxSteps: Int
    public var maxBatch: Int
    public var maxPromptLength: Int

    public init(maxWidth: Int, maxHeight: Int, maxPixels: Int, maxSteps: Int, maxBatch: Int, maxPromptLength: Int) {
        self.maxWidth = maxWidth
        self.maxHeight = maxHeight
        self.maxPixels = maxPixels
        self.maxSteps = maxSteps
        self.maxBatch = maxBatch
        self.maxPromptLength = maxPromptLength
    }
}
