import EaselCore
import EaselRunners
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `POST /v1/txt2img`: generates and answers with JSON (images as base64, seeds,
/// parameters, timings), or with the image bytes alone when the client accepts an
/// image type and asks for one image.
struct GenerationController<Context: RequestContext> {
    let engine: Engine
    let maxBodyBytes: Int

    struct GenerationResponse: Encodable {
        struct Image: Encodable {
            let index: Int
            let seed: UInt64
            let format: ImageFormat
            let width: Int
            let height: Int
            let base64: String
        }

        struct Parameters: Encodable {
            let model: String
            let prompt: String
            let negativePrompt: String
            let width: Int
            let height: Int
            let steps: Int
            let cfgScale: Double
            let sampler: String
            let seed: UInt64
            let seeds: [UInt64]
            let batchSize: Int
            let outputFormat: ImageFormat
            let quality: Int
        }

        struct Runner: Encodable {
            let pid: Int32?
            let device: String?
            let loadCount: Int
        }

        let images: [Image]
        let parameters: Parameters
        let timings: GenerationTimings
        let runner: Runner
    }

    func addRoutes(to router: Router<Context>) {
        router.post("/v1/txt2img", use: txt2img)
    }

    @Sendable func txt2img(_ request: Request, context: Context) async throws -> Response {
        let body = try await request.body.collect(upTo: maxBodyBytes)
        var generation = try GenerationRequest.decode(from: Data(buffer: body))
        let wantedImage = try Self.acceptedImageFormat(request.headers[.accept])
        if let wantedImage {
            guard (generation.batchSize ?? 1) == 1 else {
                throw EaselError(
                    .notAcceptable, "Accept: \(wantedImage.mediaType) returns one image; send batch_size 1 or accept application/json",
                    field: "batch_size"
                )
            }
            if let asked = generation.outputFormat, ImageFormat(name: asked) != wantedImage {
                throw EaselError(
                    .notAcceptable, "output_format '\(asked)' contradicts Accept: \(wantedImage.mediaType); drop one of them",
                    field: "output_format"
                )
            }
            generation.outputFormat = wantedImage.rawValue
        }
        let outcome = try await engine.generate(generation)
        if wantedImage != nil, let image = outcome.images.first {
            return Response(
                status: .ok,
                headers: [
                    .contentType: image.format.mediaType,
                    .easelSeed: String(image.seed),
                    .serverTiming: Self.serverTiming(outcome.timings),
                ],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: image.data))
            )
        }
        return JSONResponse.make(Self.response(for: outcome))
    }

    /// The image type the `Accept` header prefers over JSON, if any.
    static func acceptedImageFormat(_ accept: String?) throws -> ImageFormat? {
        guard let accept else { return nil }
        for item in accept.split(separator: ",") {
            let mediaType = item.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
            if mediaType == "application/json" || mediaType == "*/*" || mediaType == "application/*" { return nil }
            if let format = ImageFormat(mediaType: mediaType) { return format }
            if mediaType == "image/*" { return .png }
        }
        throw EaselError(.notAcceptable, "Accept: \(accept) is not served; accept application/json, image/png, image/jpeg or image/webp")
    }

    static func serverTiming(_ timings: GenerationTimings) -> String {
        [("queue", timings.queueSeconds), ("load", timings.loadSeconds), ("engine", timings.engineSeconds), ("total", timings.totalSeconds)]
            .map { "\($0.0);dur=\(String(format: "%.1f", $0.1 * 1000))" }
            .joined(separator: ", ")
    }

    static func response(for outcome: GenerationOutcome) -> GenerationResponse {
        let spec = outcome.spec
        return GenerationResponse(
            images: outcome.images.enumerated().map { index, image in
                .init(
                    index: index, seed: image.seed, format: image.format, width: image.width, height: image.height,
                    base64: image.data.base64EncodedString()
                )
            },
            parameters: .init(
                model: spec.modelID, prompt: spec.prompt, negativePrompt: spec.negativePrompt, width: spec.width,
                height: spec.height, steps: spec.steps, cfgScale: spec.cfgScale, sampler: spec.sampler,
                seed: spec.seeds[0], seeds: spec.seeds, batchSize: spec.batchSize, outputFormat: spec.outputFormat,
                quality: spec.quality
            ),
            timings: outcome.timings,
            runner: .init(pid: outcome.runtime.runnerPid, device: outcome.runtime.device, loadCount: outcome.runtime.loadCount)
        )
    }
}

extension HTTPField.Name {
    static let easelSeed = Self("X-Easel-Seed")!
    static let serverTiming = Self("Server-Timing")!
}
