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

    func addRoutes(to router: Router<Context>) {
        router.get("/v1/samplers", use: samplers)
        router.get("/v1/schedulers", use: schedulers)
        router.get("/v1/upscalers", use: upscalers)
        router.get("/v1/capabilities", use: capabilities)
    }

    @Sendable func samplers(_ request: Request, context: Context) async throws -> Response {
        let served = await engine.runnerHello?.samplers
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
        let hello = await engine.runnerHello
        let settings = engine.settings
        let diffusers = Capabilities.EngineDocument(
            name: "diffusers",
            architectures: hello?.architectures ?? Array(ModelCatalog.servedArchitectures).sorted(),
            features: hello?.features ?? ["txt2img", "img2img", "inpaint", "hires", "lora"],
            samplers: hello?.samplers ?? Sampler.all.map(\.name),
            schedulers: hello?.schedulers ?? Scheduler.all.map(\.name),
            upscalers: hello?.upscalers ?? Upscaler.all,
            device: hello?.device,
            weightTypes: ["float32", "float16"]
        )
        let limits = Capabilities.LimitsDocument(
            maxWidth: settings.maxWidth, maxHeight: settings.maxHeight, maxPixels: settings.maxPixels,
            maxSteps: settings.maxSteps, maxBatch: settings.maxBatch, maxPromptLength: settings.maxPromptLength,
            maxBodyBytes: settings.maxBodyBytes, maxQueue: settings.maxQueue
        )
        return JSONResponse.make(Capabilities(
            version: EaselVersion.current, engines: [diffusers], outputFormats: ImageFormat.allCases.map(\.rawValue),
            resizeModes: ResizeMode.allCases.map(\.rawValue), limits: limits
        ))
    }
}
