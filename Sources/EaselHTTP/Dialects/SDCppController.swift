import EaselCore
import EaselRunners
import Foundation
import Hummingbird
import NIOCore

/// stable-diffusion.cpp's server API under `/sdcpp/v1` (capabilities, `img_gen` jobs,
/// job status, cancel), so sd-server clients switch to Easel by changing the URL. Jobs
/// are native jobs: they share the queue, limits, events and `/v1/jobs`. Unlike
/// sd-server, a running job can be cancelled too.
struct SDCppController {
    let engine: Engine
    let scheduler: JobScheduler
    let settings: Settings

    typealias Context = EaselRequestContext

    /// sd.cpp's `sample_method` names and the Easel sampler each maps to.
    static let sampleMethods: [(String, String)] = [
        ("euler", "Euler"), ("euler_a", "Euler a"), ("heun", "Heun"), ("dpm2", "DPM2"), ("dpm++2m", "DPM++ 2M"),
        ("dpm++2mv2", "DPM++ 2M"), ("lms", "LMS"), ("ddim_trailing", "DDIM"), ("ddim", "DDIM"), ("pndm", "PNDM"),
        ("unipc", "UniPC"),
    ]
    /// sd.cpp's `scheduler` names and the Easel scheduler each maps to.
    static let schedules: [(String, String)] = [
        ("default", "automatic"), ("discrete", "automatic"), ("karras", "karras"), ("exponential", "exponential"),
        ("sgm_uniform", "sgm_uniform"), ("simple", "automatic"),
    ]

    func addRoutes(to router: Router<Context>) {
        let api = router.group("/sdcpp/v1").add(middleware: SDCppErrorMiddleware())
        api.get("/capabilities", use: capabilities)
        api.post("/img_gen", use: imgGen)
        api.get("/jobs/:id", use: show)
        api.post("/jobs/:id/cancel", use: cancel)
    }

    @Sendable func capabilities(_ request: Request, context: Context) async throws -> Response {
        let models = await engine.listModels().filter { $0.entry.problem == nil }.map(\.entry.id)
        return LooseResponse.make([
            "version": "Easel \(EaselVersion.current)",
            "model": orNull(await engine.defaultModelID()), "models": models,
            "modes": ["img_gen"],
            "sample_methods": Self.sampleMethods.map(\.0), "schedulers": Self.schedules.map(\.0),
            "output_formats": ImageFormat.allCases.map(\.rawValue),
            "loras": engine.loras.scan().map(\.name),
            "features": ["txt2img": true, "img2img": true, "inpaint": true, "lora": true, "cancel_running": true, "progress": true],
            "limits": [
                "max_width": settings.maxWidth, "max_height": settings.maxHeight, "max_steps": settings.maxSteps,
                "max_batch_count": settings.maxBatch, "max_queue": settings.maxQueue,
            ],
        ] as [String: Any])
    }

    @Sendable func imgGen(_ request: Request, context: Context) async throws -> Response {
        let body = try LooseJSON.parse(Data(buffer: try await request.body.collect(upTo: settings.maxBodyBytes)))
        let spec = try await engine.prepare(try translate(body))
        let id = Job.newID()
        let snapshots = try await scheduler.submit([Job(id: id, priority: 0, spec: spec)])
        var response = LooseResponse.make([
            "id": id, "kind": "img_gen", "status": "queued", "created": Int(snapshots[0].job.createdAt.timeIntervalSince1970),
            "poll_url": "/sdcpp/v1/jobs/\(id)",
        ] as [String: Any], status: .accepted)
        response.headers[.location] = "/sdcpp/v1/jobs/\(id)"
        return response
    }

    /// An sd-server `img_gen` body as a native request.
    func translate(_ original: LooseJSON) throws -> GenerationRequest {
        var body = original
        var prompt = try body.string("prompt") ?? ""
        // Extra native parameters may ride inside the prompt.
        if let open = prompt.range(of: "<sd_cpp_extra_args>"), let close = prompt.range(of: "</sd_cpp_extra_args>"),
            open.upperBound <= close.lowerBound
        {
            let json = String(prompt[open.upperBound..<close.lowerBound])
            guard let extra = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] else {
                throw EaselError.invalid("prompt", "holds <sd_cpp_extra_args> that are not a JSON object")
            }
            prompt.removeSubrange(open.lowerBound..<close.upperBound)
            body = LooseJSON(body.fields.merging(extra) { _, extra in extra })
        }
        var request = GenerationRequest()
        request.prompt = prompt.trimmingCharacters(in: .whitespaces)
        request.negativePrompt = try body.string("negative_prompt")
        request.width = try body.int("width")
        request.height = try body.int("height")
        request.seed = try body.int64("seed")
        request.batchSize = try body.int("batch_count") ?? body.int("batch_size")
        request.model = try body.string("model")
        request.outputFormat = try body.string("output_format")
        if let compression = try body.int("output_compression") { request.quality = max(1, min(100, compression)) }
        if let sample = try body.object("sample_params") {
            request.steps = try sample.int("sample_steps")
            if let method = try sample.string("sample_method"), !method.isEmpty {
                request.sampler = Self.sampleMethods.first { $0.0 == method.lowercased() }?.1 ?? method
            }
            if let schedule = try sample.string("scheduler"), !schedule.isEmpty {
                request.scheduler = Self.schedules.first { $0.0 == schedule.lowercased() }?.1 ?? schedule
            }
            if let guidance = try sample.object("guidance") {
                request.cfgScale = try guidance.double("txt_cfg")
            }
        }
        request.steps = try body.int("sample_steps") ?? request.steps
        request.cfgScale = try body.double("cfg_scale") ?? request.cfgScale
        if let loras = try body.array("lora") ?? body.array("loras") {
            request.loras = try loras.enumerated().map { (index, item) throws -> LoraRequest in
                if let name = item as? String { return LoraRequest(name: name) }
                guard let object = item as? [String: Any] else {
                    throw EaselError.invalid("lora[\(index)]", "must be a name or {\"path\", \"multiplier\"}")
                }
                let lora = LooseJSON(object, path: "lora[\(index)].")
                guard let name = try lora.string("path") ?? lora.string("name") else {
                    throw EaselError.invalid("lora[\(index)].path", "must name a LoRA")
                }
                let stem = URL(fileURLWithPath: name).deletingPathExtension().lastPathComponent
                return LoraRequest(name: stem, weight: try lora.double("multiplier") ?? lora.double("weight"))
            }
        }
        if let initImage = try body.string("init_image"), !initImage.isEmpty {
            request.initImage = initImage
            request.denoisingStrength = try body.double("strength")
            if let mask = try body.string("mask_image") ?? body.string("mask"), !mask.isEmpty { request.mask = mask }
        }
        return request
    }

    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        let snapshot = try await scheduler.snapshot(id: try context.parameters.require("id"))
        return LooseResponse.make(try await Self.document(snapshot, store: scheduler.store))
    }

    @Sendable func cancel(_ request: Request, context: Context) async throws -> Response {
        let snapshot = try await scheduler.cancel(id: try context.parameters.require("id"))
        return LooseResponse.make(try await Self.document(snapshot, store: scheduler.store))
    }

    static func document(_ snapshot: JobSnapshot, store: any JobStore) async throws -> [String: Any] {
        let job = snapshot.job
        let status = switch job.state {
        case .queued: "queued"
        case .running: "generating"
        case .succeeded: "completed"
        case .failed: "failed"
        case .cancelled: "cancelled"
        }
        func time(_ date: Date?) -> Any { orNull(date.map { Int($0.timeIntervalSince1970) }) }
        var result: Any = NSNull()
        if job.state == .succeeded {
            let images = try await DialectGeneration.images(of: job, store: store)
            result = [
                "images": images.map { ["b64_json": $0.data.base64EncodedString(), "index": $0.record.index, "seed": $0.record.seed] as [String: Any] },
                "output_format": job.spec.outputFormat.rawValue,
            ] as [String: Any]
        }
        return [
            "id": job.id, "kind": "img_gen", "status": status, "queue_position": snapshot.queuePosition ?? 0,
            "created": time(job.createdAt), "started": time(job.startedAt), "completed": time(job.finishedAt),
            "progress": ["step": job.step, "steps": job.totalSteps, "eta_seconds": orNull(snapshot.etaSeconds)] as [String: Any],
            "error": orNull(job.failure?.message), "error_code": orNull(job.failure?.code),
            "result": result,
        ]
    }
}

/// Errors as sd-server writes them: `{"error": message}` (with Easel's code and field
/// beside it).
struct SDCppErrorMiddleware: RouterMiddleware {
    typealias Context = EaselRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let easel = ErrorMiddleware<Context>.easelError(for: error, request: request)
            let status = [.invalidJSON, .invalidField, .unknownField].contains(easel.code) ? 400 : easel.httpStatus
            return LooseResponse.make(
                ["error": easel.message, "code": easel.code.rawValue, "field": orNull(easel.field)] as [String: Any],
                status: HTTPResponse.Status(code: status)
            )
        }
    }
}
