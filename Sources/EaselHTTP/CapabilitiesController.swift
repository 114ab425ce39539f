import EaselCore
import EaselRunners
import Foundation
import Hummingbird

/// What requests may ask for: samplers, schedulers, upscalers, and `/v1/capabilities`
/// (engines, architectures, features, limits, output formats) in one document.
struct CapabilitiesController<Context: RequestContext> {
    let engine: Engine

    struct SamplerDocument: Encodable {
        let name: String
        let aliases: [String]
        /// Whether the engine of the loaded runner serves it; nil before a runner started.
        let available: Bool?
    }

    struct Capabilities: Encodable {
        struct EngineDocument: Encodable {
            let name: String
            let architectures: [String]
            let features: [String]
            let samplers: [String]
            let schedulers: [String]
            let upscalers: [String]
            let device: String?
            let weightTypes: [String]
            /// What cancelling a running job does: `step` stops it at the next step;
            /// `runner_restart` ends the runner, and the model loads again on next use.
            let cancel: String
            /// The model formats it loads.
            let formats: [String]
        }

        struct LimitsDocument: Encodable {
            let maxWidth: Int
            let maxHeight: Int
            let maxPixels: Int
            let maxSteps: Int
            let maxBatch: Int
            let maxPromptLength: Int
            let maxBodyBytes: Int
            let maxQueue: Int
        }

        let version: String
        let engines: [EngineDocument]
        let outputFormats: [String]
        let resizeModes: [String]
        let limits: LimitsDocument
    }

    /// The runner's lists (runner/easel_runner/engine.py, sdcpp.py), for the time before a
    /// runner of the engine has said them itself.
    private static func servedBeforeStart(_ kind: EngineKind) -> (features: [String], samplers: [String], upscalers: [String]) {
        switch kind {
        case .diffusers: (["txt2img", "img2img", "inpaint", "hires", "lora"], Sampler.all.map(\.name), Upscaler.all)
        case .stableDiffusionCpp:
            (["txt2img", "img2img", "lora"], ["Euler", "Euler a", "Heun", "DPM2", "DPM++ 2M", "DPM++ 2M Karras", "DDIM"], [])
        }
    }

    func addRoutes(to router: Router<Context>) {
        router.get("/v1/samplers", use: samplers)
        router.get("/v1/schedulers", use: schedulers)
        router.get("/v1/upscalers", use: upscalers)
        router.get("/v1/capabilities", use: capabilities)
    }

    @Sendable func samplers(_ request: Request, context: Context) async throws -> Response {
        let served = await engine.runnerHellos[.diffusers]?.samplers
        return JSONResponse.make(Sampler.all.map {
            SamplerDocument(name: $0.name, aliases: $0.aliases, available: served.map { [name = $0.name] in $0.contains(name) })
        })
    }

    @Sendable func schedulers(_ request: Request, context: Context) async throws -> Response {
        JSONResponse.make(Scheduler.all)
    }

    @Sendable func upscalers(_ request: Request, context: Context) async throws -> Response {
        JSONResponse.make(Upscaler.all.map { ["name": $0] })
    }

    @Sendable func capabilities(_ request: Request, context: Context) async throws -> Response {
        let hellos = await engine.runnerHellos
        let settings = engine.settings
        let engines = EngineKind.allCases.map { kind in
            let hello = hellos[kind]
            // Before a runner of the engine has started, what it serves when installed.
            let known = Self.servedBeforeStart(kind)
            return Capabilities.EngineDocument(
                name: kind.rawValue,
                architectures: hello?.architectures ?? Array(ModelCatalog.servedArchitectures).sorted(),
                features: hello?.features ?? known.features,
                samplers: hello?.samplers ?? known.samplers,
                schedulers: hello?.schedulers ?? Scheduler.all.map(\.name),
                upscalers: hello?.upscalers ?? known.upscalers,
                device: hello?.device,
                weightTypes: kind.weightTypes,
                cancel: (hello?.cancelEndsRunner ?? (kind == .stableDiffusionCpp)) ? "runner_restart" : "step",
                formats: kind.formats.map(\.rawValue)
            )
        }
        let limits = Capabilities.LimitsDocument(
            maxWidth: settings.maxWidth, maxHeight: settings.maxHeight, maxPixels: settings.maxPixels,
            maxSteps: settings.maxSteps, maxBatch: settings.maxBatch, maxPromptLength: settings.maxPromptLength,
            maxBodyBytes: settings.maxBodyBytes, maxQueue: settings.maxQueue
        )
        return JSONResponse.make(Capabilities(
            version: EaselVersion.current, engines: engines, outputFormats: ImageFormat.allCases.map(\.rawValue),
            resizeModes: ResizeMode.allCases.map(\.rawValue), limits: limits
        ))
    }
}
