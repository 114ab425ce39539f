import EaselCore
import EaselRunners
import Foundation
import Hummingbird
import NIOCore

/// OpenAI's Images API: `POST /v1/images/generations` and `POST /v1/images/edits`, so
/// the official clients and the chat front ends built on them generate with Easel by
/// changing the base URL. Requests become native ``GenerationRequest``s on the job
/// queue; Easel's own fields (steps, seed, cfg_scale, negative_prompt, sampler,
/// scheduler, denoising_strength, loras) ride along as extensions. `GET /v1/models`
/// already has OpenAI's list shape and is shared with the native API.
struct OpenAIImagesController {
    let engine: Engine
    let scheduler: JobScheduler
    let settings: Settings
    let converter: ImageConverter

    typealias Context = EaselRequestContext

    /// Model names OpenAI clients send by default; they mean "the server's default model".
    static let openAIModelPrefixes = ["dall-e", "gpt-image", "chatgpt-image"]

    func addRoutes(to router: Router<Context>) {
        let images = router.group("/v1/images").add(middleware: OpenAIErrorMiddleware())
        images.post("/generations") { request, context in try await handle(request, context: context, edit: false) }
        images.post("/edits") { request, context in try await handle(request, context: context, edit: true) }
    }

    struct Options {
        var responseFormat = "b64_json"
        var stream = false
        var partialImages = 0
        var size: String?
        var quality = "auto"
        var background = "opaque"
    }

    @Sendable func handle(_ request: Request, context: Context, edit: Bool) async throws -> Response {
        let bytes = Data(buffer: try await request.body.collect(upTo: settings.maxBodyBytes))
        let fields: LooseJSON
        var form: MultipartForm?
        if let boundary = MultipartForm.boundary(of: request.headers[.contentType]) {
            let parsed = try MultipartForm.parse(bytes, boundary: boundary)
            form = parsed
            var values: [String: Any] = [:]
            for part in parsed.parts where part.fileName == nil && !part.name.hasPrefix("image") && part.name != "mask" {
                values[part.name] = part.text
            }
            fields = LooseJSON(values)
        } else {
            fields = try LooseJSON.parse(bytes)
        }
        var (generation, options) = try await translate(fields)
        if edit {
            try await addEditImages(&generation, form: form, fields: fields, sizeGiven: options.size != nil)
        }
        let spec = try await engine.prepare(generation)
        options.size = "\(spec.outputWidth)x\(spec.outputHeight)"
        if options.stream {
            return try await stream(spec, options: options, edit: edit, context: context)
        }
        let job = try await GenerationController.run(
            spec, scheduler: scheduler, context: context, cancelOnDisconnect: settings.cancelOnDisconnect
        )
        let images = try await DialectGeneration.images(of: job, store: scheduler.store)
        let origin = DialectGeneration.origin(of: request, settings: settings)
        let data: [[String: Any]] = images.map { image in
            options.responseFormat == "url"
                ? ["url": "\(origin)/v1/images/\(image.record.id)", "revised_prompt": spec.prompt]
                : ["b64_json": image.data.base64EncodedString(), "revised_prompt": spec.prompt]
        }
        return LooseResponse.make([
            "created": Int(Date().timeIntervalSince1970), "data": data, "usage": Self.usage(spec, images: images.count),
            "output_format": spec.outputFormat.rawValue, "size": options.size ?? "", "quality": options.quality,
            "background": options.background,
        ])
    }

    /// The JSON (or form) fields as a native request.
    func translate(_ fields: LooseJSON) async throws -> (GenerationRequest, Options) {
        var request = GenerationRequest()
        var options = Options()
        guard let prompt = try fields.string("prompt"), !prompt.isEmpty else {
            throw EaselError.invalid("prompt", "is required")
        }
        request.prompt = prompt
        if let model = try fields.string("model"), !model.isEmpty {
            if let entry = try? await engine.resolve(model) {
                request.model = entry.id
            } else if let entry = CheckpointNames.resolve(model, in: await engine.listModels().map(\.entry)) {
                request.model = entry.id
            } else if !Self.openAIModelPrefixes.contains(where: { model.lowercased().hasPrefix($0) }) {
                throw EaselError(.modelNotFound, "the model '\(model)' does not exist; GET /v1/models lists them", field: "model")
            }
        }
        if let n = try fields.int("n") {
            guard (1...10).contains(n) else { throw EaselError.invalid("n", "must be between 1 and 10, not \(n)") }
            request.batchSize = n
        }
        if let size = try fields.string("size"), size != "auto" {
            let sides = size.lowercased().split(separator: "x").map { Int($0) }
            guard sides.count == 2, let width = sides[0], let height = sides[1] else {
                throw EaselError.invalid("size", "must be 'auto' or WIDTHxHEIGHT such as '512x512', not '\(size)'")
            }
            request.width = width
            request.height = height
            options.size = size
        }
        if let format = try fields.string("response_format") {
            guard ["url", "b64_json"].contains(format) else {
                throw EaselError.invalid("response_format", "must be 'url' or 'b64_json', not '\(format)'")
            }
            options.responseFormat = format
        }
        request.outputFormat = try fields.string("output_format") ?? "png"
        if let compression = try fields.int("output_compression") {
            guard (0...100).contains(compression) else {
                throw EaselError.invalid("output_compression", "must be between 0 and 100, not \(compression)")
            }
            request.quality = max(1, compression)
        }
        if let quality = try fields.string("quality") {
            guard ["auto", "low", "medium", "high", "standard", "hd", "xhigh", "max"].contains(quality) else {
                throw EaselError.invalid("quality", "must be auto, low, medium, high, standard or hd, not '\(quality)'")
            }
            options.quality = quality
        }
        if let background = try fields.string("background") { options.background = background == "transparent" ? "transparent" : "opaque" }
        _ = try fields.string("style")
        options.stream = try fields.bool("stream") ?? false
        if let partial = try fields.int("partial_images") {
            guard (0...3).contains(partial) else { throw EaselError.invalid("partial_images", "must be between 0 and 3, not \(partial)") }
            options.partialImages = partial
        }
        // Easel's extensions.
        request.steps = try fields.int("steps")
        request.seed = try fields.int64("seed")
        request.cfgScale = try fields.double("cfg_scale") ?? fields.double("guidance_scale")
        request.negativePrompt = try fields.string("negative_prompt")
        request.sampler = try fields.string("sampler") ?? fields.string("sampler_name")
        request.scheduler = try fields.string("scheduler")
        request.denoisingStrength = try fields.double("denoising_strength") ?? fields.double("strength")
        return (request, options)
    }

    /// The image (and mask) of an edit: multipart `image` or `image[]` files, or JSON
    /// `image`/`images` as base64 or data URLs. OpenAI's mask is transparent where the
    /// image should change; it becomes a native mask, white where it repaints.
    private func addEditImages(_ request: inout GenerationRequest, form: MultipartForm?, fields: LooseJSON, sizeGiven: Bool) async throws {
        var image: Data?
        var mask: Data?
        if let form {
            image = (form.first("image") ?? form.first("image[]"))?.data
            mask = form.first("mask")?.data
        } else {
            if let text = try? fields.string("image") {
                image = try EncodedImage.decode(text, field: "image")
            } else if let list = try fields.array("images"), let first = list.first {
                let text = (first as? String) ?? ((first as? [String: Any])?["image_url"] as? String) ?? ""
                image = try EncodedImage.decode(text, field: "images")
            }
            if let text = try? fields.string("mask") {
                mask = try EncodedImage.decode(text, field: "mask")
            } else if let object = try? fields.object("mask"), let text = try object.string("image_url") {
                mask = try EncodedImage.decode(text, field: "mask")
            }
        }
        guard let image, !image.isEmpty else { throw EaselError.invalid("image", "is required: send the image to edit") }
        guard EncodedImage.format(of: image) != nil else { throw EaselError.invalid("image", "must be a PNG, JPEG or WebP file") }
        request.initImage = image.base64EncodedString()
        if request.denoisingStrength == nil { request.denoisingStrength = mask == nil ? 0.75 : 1.0 }
        if !sizeGiven, let (width, height) = Self.pngSize(image) {
            request.width = max(64, width / 8 * 8)
            request.height = max(64, height / 8 * 8)
        }
        if let mask {
            guard EncodedImage.format(of: mask) != nil else { throw EaselError.invalid("mask", "must be a PNG file") }
            request.mask = try await converter.maskFromAlpha(mask).base64EncodedString()
            request.maskBlur = try fields.int("mask_blur")
            request.invertMask = try fields.bool("invert_mask")
        }
    }

    static func event(_ type: String, options: Options, format: ImageFormat, _ fields: [String: Any]) -> ByteBuffer {
        var body = fields
        body["type"] = type
        body["created_at"] = Int(Date().timeIntervalSince1970)
        body["size"] = options.size ?? "auto"
        body["quality"] = options.quality
        body["background"] = options.background
        body["output_format"] = format.rawValue
        return ByteBuffer(string: "event: \(type)\ndata: \(String(decoding: LooseResponse.data(body), as: UTF8.self))\n\n")
    }

    static func pngSize(_ data: Data) -> (Int, Int)? {
        let bytes = [UInt8](data.prefix(24))
        guard bytes.count == 24, bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) else { return nil }
        func int(_ offset: Int) -> Int { bytes[offset..<(offset + 4)].reduce(0) { $0 << 8 | Int($1) } }
        return (int(16), int(20))
    }

    static func usage(_ spec: GenerationSpec, images: Int) -> [String: Any] {
        let words = spec.prompt.split(whereSeparator: \.isWhitespace).count
        let output = images * (spec.outputWidth / 8) * (spec.outputHeight / 8) / 64
        return [
            "input_tokens": words, "output_tokens": output, "total_tokens": words + output,
            "input_tokens_details": ["text_tokens": words, "image_tokens": spec.initImage == nil ? 0 : 1],
        ]
    }

    /// `stream: true`: Server-Sent Events, `*.partial_image` from the job's previews (up
    /// to `partial_images`), then `*.completed` per image. A client that goes away
    /// cancels the job.
    private func stream(_ spec: GenerationSpec, options: Options, edit: Bool, context: Context) async throws -> Response {
        let id = Job.newID()
        _ = try await scheduler.submit([Job(id: id, priority: 0, spec: spec)])
        let events = try await scheduler.events(jobID: id)
        let prefix = edit ? "image_edit" : "image_generation"
        let scheduler = self.scheduler
        let format = spec.outputFormat
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                var partials = 0
                do {
                    for await update in events {
                        if update.kind == .progress, let preview = update.preview, partials < options.partialImages {
                            try await writer.write(Self.event("\(prefix).partial_image", options: options, format: format, [
                                "b64_json": preview.data.base64EncodedString(), "partial_image_index": partials,
                            ]))
                            partials += 1
                        }
                        guard update.isFinal else { continue }
                        let job = update.snapshot.job
                        if job.state == .succeeded {
                            let images = try await DialectGeneration.images(of: job, store: scheduler.store)
                            for image in images {
                                try await writer.write(Self.event("\(prefix).completed", options: options, format: format, [
                                    "b64_json": image.data.base64EncodedString(), "usage": Self.usage(spec, images: 1),
                                ]))
                            }
                        } else {
                            let failure = job.failure ?? .init(code: EaselError.Code.internalError.rawValue, message: "the job failed")
                            let error = EaselError(EaselError.Code(rawValue: failure.code) ?? .internalError, failure.message)
                            let body = String(decoding: LooseResponse.data(OpenAIErrorMiddleware.body(error)), as: UTF8.self)
                            try await writer.write(ByteBuffer(string: "event: error\ndata: \(body)\n\n"))
                        }
                        break
                    }
                } catch {
                    _ = try? await scheduler.cancel(id: id)
                    throw error
                }
                try await writer.finish(nil)
            }
        )
    }
}

/// Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`, 400 for
/// a bad request.
struct OpenAIErrorMiddleware: RouterMiddleware {
    typealias Context = EaselRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let easel = ErrorMiddleware<Context>.easelError(for: error, request: request)
            return LooseResponse.make(Self.body(easel), status: HTTPResponse.Status(code: Self.status(easel)))
        }
    }

    static func status(_ error: EaselError) -> Int {
        switch error.code {
        case .invalidJSON, .invalidField, .unknownField, .unsupportedModel: 400
        default: error.httpStatus
        }
    }

    static func body(_ error: EaselError) -> [String: Any] {
        let status = status(error)
        let type = switch status {
        case 400, 404, 406, 409, 413, 422: "invalid_request_error"
        case 429: "rate_limit_error"
        default: "server_error"
        }
        return ["error": [
            "message": error.message, "type": type, "param": orNull(error.field), "code": error.code.rawValue,
        ] as [String: Any]]
    }
}
