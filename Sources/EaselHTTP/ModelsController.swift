import EaselCore
import EaselRunners
import Foundation
import Hummingbird

/// `GET /v1/models`: every model in the folder and what its runner is doing. The list
/// has OpenAI's shape (`object: list`, `data[].id`) so OpenAI clients read it too.
struct ModelsController<Context: RequestContext> {
    let engine: Engine

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
        let engine: String
        let sizeBytes: Int64
        let `default`: Bool
        let problem: String?
        let loaded: Bool
        let runtime: ModelRuntime
    }

    func addRoutes(to router: Router<Context>) {
        router.get("/v1/models", use: list)
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let listings = await engine.listModels()
        let models = listings.map { listing in
            let modified = (try? FileManager.default.attributesOfItem(atPath: listing.entry.path)[.modificationDate] as? Date) ?? nil
            return Model(
                id: listing.entry.id, created: Int(modified?.timeIntervalSince1970 ?? 0), fileName: listing.entry.fileName,
                format: listing.entry.format.rawValue, architecture: listing.entry.architecture, engine: listing.entry.engine,
                sizeBytes: listing.entry.sizeBytes, default: listing.isDefault, problem: listing.entry.problem,
                loaded: listing.runtime.state != .unloaded, runtime: listing.runtime
            )
        }
        return JSONResponse.make(ModelList(data: models, defaultModel: engine.defaultModelID()))
    }
}
