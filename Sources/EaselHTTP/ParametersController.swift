import EaselCore
import Foundation
import Hummingbird

/// Server-wide defaults (`/v1/defaults`) and named presets (`/v1/presets/{name}`),
/// changed at run time and kept in the store.
struct ParametersController<Context: RequestContext> {
    let parameters: GenerationParameters
    let maxBodyBytes: Int

    struct PresetList: Encodable {
        let object = "list"
        let data: [PresetDocument]
    }

    struct PresetDocument: Encodable {
        let name: String
        let updatedAt: Date
        /// The request fields the preset sets (their names are already snake_case).
        let fields: GenerationRequest

        init(_ preset: Preset) {
            name = preset.name
            updatedAt = preset.updatedAt
            fields = preset.request
        }
    }

    func addRoutes(to router: Router<Context>) {
        router.get("/v1/defaults", use: defaults)
        router.patch("/v1/defaults", use: updateDefaults)
        router.delete("/v1/defaults", use: resetDefaults)
        router.get("/v1/presets", use: listPresets)
        router.get("/v1/presets/:name", use: showPreset)
        router.put("/v1/presets/:name", use: savePreset)
        router.delete("/v1/presets/:name", use: deletePreset)
    }

    @Sendable func defaults(_ request: Request, context: Context) async throws -> Response {
        JSONResponse.make(await parameters.defaults)
    }

    @Sendable func updateDefaults(_ request: Request, context: Context) async throws -> Response {
        let patch = try GenerationRequest.decode(from: Data(buffer: try await request.body.collect(upTo: maxBodyBytes)))
        return JSONResponse.make(try await parameters.updateDefaults(patch))
    }

    @Sendable func resetDefaults(_ request: Request, context: Context) async throws -> Response {
        JSONResponse.make(try await parameters.resetDefaults())
    }

    @Sendable func listPresets(_ request: Request, context: Context) async throws -> Response {
        JSONResponse.make(PresetList(data: await parameters.allPresets().map(PresetDocument.init)))
    }

    @Sendable func showPreset(_ request: Request, context: Context) async throws -> Response {
        JSONResponse.make(PresetDocument(try await parameters.preset(named: try context.parameters.require("name"))))
    }

    @Sendable func savePreset(_ request: Request, context: Context) async throws -> Response {
        let fields = try GenerationRequest.decode(from: Data(buffer: try await request.body.collect(upTo: maxBodyBytes)))
        let preset = try await parameters.savePreset(named: try context.parameters.require("name"), fields)
        return JSONResponse.make(PresetDocument(preset))
    }

    @Sendable func deletePreset(_ request: Request, context: Context) async throws -> Response {
        try await parameters.deletePreset(named: try context.parameters.require("name"))
        return Response(status: .noContent)
    }
}
