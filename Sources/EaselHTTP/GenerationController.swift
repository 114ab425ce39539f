import EaselCore
import EaselRunners
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `POST /v1/txt2img`: generates and answers with JSON (images as base64, seeds,
/// parameters, timings), or with the image bytes alone when the client accepts an
/// image type and asks for one image. It runs on the job queue like `POST /v1/jobs`.
struct GenerationController {
    let engine: Engine
    let scheduler: JobScheduler
    let settings: Settings

    typealias Context = EaselRequestContext

    struct GenerationResponse: Encodable {
        /// A job image with its bytes inline.
        struct Image: Encodable {
            let image: JobDocument.Image
            let base64: String

            func encode(to encoder: Encoder) throws {
                try image.encode(to: encoder)
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(base64, forKey: .base64)
            }

            enum CodingKeys: String, CodingKey { case base64 }
        }

        let jobId: String
        let images: [Image]
        let parameters: ParametersDocument
        let timings: GenerationTimings?
        let runner: RunnerInfo?
    }

    func addRoutes(to router: Router<Context>) {
        router.post("/v1/txt2img", use: txt2img)
    }

    @Sendable func txt2img(_ request: Request, context: Context) async throws -> Response {
        let body = try await request.body.collect(upTo: settings.maxBodyBytes)
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
        let job = try await Self.run(try await engine.prepare(generation), scheduler: scheduler, context: context, cancelOnDisconnect: settings.cancelOnDisconnect)
        var images: [(Job.Image, Data)] = []
        for record in job.images {
            guard let data = try await scheduler.store.imageData(id: record.id) else {
                throw EaselError(.internalError, "image \(record.id) of job \(job.id) is missing from the store")
            }
            images.append((record, data))
        }
        if wantedImage != nil, let (image, data) = images.first {
            var headers: HTTPFields = [.contentType: image.format.mediaType, .easelSeed: String(image.seed), .easelJob: job.id]
            if let timings = job.timings { headers[.serverTiming] = Self.serverTiming(timings) }
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        }
        return JSONResponse.make(
            GenerationResponse(
                jobId: job.id,
                images: images.map { image, data in .init(image: JobDocument.Image(image), base64: data.base64EncodedString()) },
                parameters: ParametersDocument(job.spec), timings: job.timings, runner: job.runner
            )
        )
    }

    /// Queues `spec` as a job and waits for it; the job is cancelled if the client goes
    /// away first. Throws the job's error unless it succeeded.
    static func run(_ spec: GenerationSpec, scheduler: JobScheduler, context: Context, cancelOnDisconnect: Bool) async throws -> Job {
        let id = Job.newID()
        _ = try await scheduler.submit([Job(id: id, priority: 0, spec: spec)])
        // A request that is cancelled (--request-timeout) takes its job with it.
        let job = try await withTaskCancellationHandler {
            cancelOnDisconnect
                ? try await ClientGoneHandler.watching(context.channel, onGone: { Task { _ = try? await scheduler.cancel(id: id) } }) {
                    try await scheduler.finished(id: id)
                }
                : try await scheduler.finished(id: id)
        } onCancel: {
            Task { _ = try? await scheduler.cancel(id: id) }
        }
        guard job.state.isFinal else {
            throw EaselError(.shuttingDown, "the server shut down before job \(id) finished; it runs again after the next start")
        }
        if let failure = job.failure, job.state != .succeeded {
            throw EaselError(EaselError.Code(rawValue: failure.code) ?? .internalError, failure.message)
        }
        return job
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
}

extension HTTPField.Name {
    static let easelSeed = Self("X-Easel-Seed")!
    static let serverTiming = Self("Server-Timing")!
    static let easelJob = Self("X-Easel-Job")!
}
