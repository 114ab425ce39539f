import EaselCore
import EaselRunners
import Foundation
import Hummingbird

/// The models folder and what is loaded: list, rescan, load, unload, and the LoRA
/// folder. The list has OpenAI's shape (`object: list`, `data[].id`) so OpenAI clients
/// read it too; Easel's own fields sit beside OpenAI's.
struct ModelsController<Context: RequestContext> {
    let engine: Engine
    let maxBodyBytes: Int

    struct ModelList: Encodable {
        let object = "list"
        let data: [Model]
        let defaultModel: String?
    }

    struct Model: Encodable {
        let object = "model"
        let id: String
        let ownedBy = "easel"
        let created: Int
        let fileName: String
        let format: String
        let architecture: String?
        /// The engine of the loaded runner, else the one a request naming none gets.
        let engine: String
        /// How a request naming no engine gets it loaded: engine, weight type, VAE tiling.
        let loadOptions: LoadOptions
        let sizeBytes: Int64
        let `default`: Bool
        let problem: String?
        let loaded: Bool
        let state: ModelRuntime.State
        let memoryBytes: Int64?
        let lastUsed: Date?
        /// Seconds it stays loaded while idle; nil: until it must make room.
        let keepAlive: Double?
        let expiresAt: Date?
        let runtime: ModelRuntime

        init(_ listing: ModelListing) {
            let entry = listing.entry
            let modified = (try? FileManager.default.attributesOfItem(atPath: entry.path)[.modificationDate] as? Date) ?? nil
            id = entry.id
            created = Int(modified?.timeIntervalSince1970 ?? 0)
            fileName = entry.fileName
            format = entry.format.rawValue
            architecture = entry.architecture
            engine = listing.runtime.engine ?? listing.loadOptions.engine.rawValue
            loadOptions = listing.loadOptions
            sizeBytes = entry.sizeBytes
            self.default = listing.isDefault
            problem = entry.problem
            loaded = listing.runtime.state != .unloaded && listing.runtime.state != .loading
            state = listing.runtime.state
            memoryBytes = listing.runtime.memoryBytes
            lastUsed = listing.runtime.lastUsed
            keepAlive = listing.runtime.keepAlive
            expiresAt = listing.runtime.expiresAt
            runtime = listing.runtime
        }
    }

    struct LoadRequest: Decodable {
        /// Seconds to stay loaded while idle; -1 until it must make room.
        let keepAlive: Double?
        let engine: String?
        let weightType: String?
        let vaeTiling: Bool?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case keepAlive = "keep_alive"
            case engine
            case weightType = "weight_type"
            case vaeTiling = "vae_tiling"
        }
    }

    struct LoraList: Encodable {
        let object = "list"
        let data: [LoraEntryDocument]
    }

    struct LoraEntryDocument: Encodable {
        let name: String
        let fileName: String
        let sizeBytes: Int64
    }

    func addRoutes(to router: Router<Context>) {
        router.get("/v1/models", use: list)
        router.post("/v1/models/refresh", use: refresh)
        router.get("/v1/models/:id", use: show)
        router.post("/v1/models/:id/load", use: load)
        router.post("/v1/models/:id/unload", use: unload)
        router.get("/v1/loras", use: listLoras)
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let models = await engine.listModels().map(Model.init)
        return JSONResponse.make(ModelList(data: models, defaultModel: await engine.defaultModelID()))
    }

    @Sendable func refresh(_ request: Request, context: Context) async throws -> Response {
        await engine.refresh()
        return try await list(request, context: context)
    }

    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        JSONResponse.make(Model(try await engine.listing(of: try modelID(context))))
    }

    @Sendable func load(_ request: Request, context: Context) async throws -> Response {
        let body = try await request.body.collect(upTo: maxBodyBytes)
        var keepAlive: Double?
        var change = Engine.LoadChange()
        if body.readableBytes > 0 {
            let load = try EaselCore.RequestBody.decode(
                LoadRequest.self, from: Data(buffer: body), knownFields: LoadRequest.CodingKeys.allCases.map(\.rawValue)
            )
            if let seconds = load.keepAlive {
                guard seconds.isFinite, seconds >= 0 || seconds == -1 else {
                    throw EaselError.invalid("keep_alive", "must be -1 (until it must make room) or 0 or more seconds, not \(seconds)")
                }
                keepAlive = seconds
            }
            change = Engine.LoadChange(engine: load.engine, weightType: load.weightType, vaeTiling: load.vaeTiling)
        }
        return JSONResponse.make(Model(try await engine.load(try modelID(context), keepAlive: keepAlive, change: change)))
    }

    @Sendable func unload(_ request: Request, context: Context) async throws -> Response {
        JSONResponse.make(Model(try await engine.unload(try modelID(context))))
    }

    @Sendable func listLoras(_ request: Request, context: Context) async throws -> Response {
        let loras = engine.loras.scan().map { LoraEntryDocument(name: $0.name, fileName: $0.fileName, sizeBytes: $0.sizeBytes) }
        return JSONResponse.make(LoraList(data: loras))
    }

    private func modelID(_ context: Context) throws -> String {
        try context.parameters.require("id")
    }
}
