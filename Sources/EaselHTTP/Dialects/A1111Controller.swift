import EaselCore
import EaselRunners
import Foundation
import Hummingbird
import NIOCore

/// AUTOMATIC1111's web UI API under `/sdapi/v1`, so that its clients (webuiapi, Open
/// WebUI, SillyTavern, Krita plug-ins…) work against Easel unchanged. Each request is
/// translated into a native ``GenerationRequest`` and runs on the same job queue as
/// `POST /v1/txt2img`; errors have A1111's shape.
struct A1111Controller {
    let engine: Engine
    let scheduler: JobScheduler
    let settings: Settings
    let state: DialectState

    typealias Context = EaselRequestContext

    func addRoutes(to router: Router<Context>) {
        let api = router.group("/sdapi/v1").add(middleware: A1111ErrorMiddleware())
        api.post("/txt2img") { request, context in try await generate(request, context: context, img2img: false) }
        api.post("/img2img") { request, context in try await generate(request, context: context, img2img: true) }
        api.get("/options", use: options)
        api.post("/options", use: setOptions)
        api.get("/sd-models", use: sdModels)
        api.get("/samplers", use: samplers)
        api.get("/schedulers", use: schedulers)
        api.get("/upscalers", use: upscalers)
        api.get("/latent-upscale-modes", use: latentUpscaleModes)
        api.get("/loras", use: loras)
        api.post("/refresh-loras") { _, _ in LooseResponse.make(any: NSNull()) }
        api.post("/refresh-checkpoints", use: refreshCheckpoints)
        api.post("/unload-checkpoint", use: unloadCheckpoint)
        api.post("/reload-checkpoint", use: reloadCheckpoint)
        api.get("/progress", use: progress)
        api.post("/interrupt", use: interrupt)
        api.post("/skip", use: interrupt)
        api.get("/memory", use: memory)
        api.post("/png-info", use: pngInfo)
        api.get("/cmd-flags", use: cmdFlags)
        api.get("/scripts") { _, _ in LooseResponse.make(["txt2img": [String](), "img2img": [String]()]) }
        api.get("/script-info") { _, _ in LooseResponse.make([Any]()) }
        for empty in ["/sd-vae", "/sd-modules", "/hypernetworks", "/face-restorers", "/realesrgan-models", "/prompt-styles", "/extensions"] {
            api.get(RouterPath(empty)) { _, _ in LooseResponse.make([Any]()) }
        }
        api.get("/embeddings") { _, _ in LooseResponse.make(["loaded": [String: Any](), "skipped": [String: Any]()]) }
    }

    // MARK: - Generation

    @Sendable func generate(_ request: Request, context: Context, img2img: Bool) async throws -> Response {
        let body = try LooseJSON.parse(Data(buffer: try await request.body.collect(upTo: settings.maxBodyBytes)))
        let generation = try await translate(body, img2img: img2img)
        let spec = try await engine.prepare(generation)
        let job: Job
        do {
            job = try await GenerationController.run(
                spec, scheduler: scheduler, context: context, cancelOnDisconnect: settings.cancelOnDisconnect
            )
        } catch let error as EaselError where error.code == .cancelled {
            // A1111 answers an interrupted generation normally, with what it has: here
            // no images.
            return LooseResponse.make([
                "images": [String](), "parameters": parameters(body, spec: spec, img2img: img2img),
                "info": Self.infoString(spec, images: 0, interrupted: true),
            ])
        }
        let images = try await DialectGeneration.images(of: job, store: scheduler.store)
        return LooseResponse.make([
            "images": images.map { $0.data.base64EncodedString() },
            "parameters": parameters(body, spec: spec, img2img: img2img),
            "info": Self.infoString(spec, images: images.count, interrupted: false),
        ])
    }

    /// An A1111 txt2img or img2img body as a native request.
    func translate(_ body: LooseJSON, img2img: Bool) async throws -> GenerationRequest {
        var request = GenerationRequest()
        request.prompt = try body.string("prompt") ?? ""
        request.negativePrompt = try body.string("negative_prompt")
        request.width = try body.int("width")
        request.height = try body.int("height")
        request.steps = try body.int("steps")
        request.cfgScale = try body.double("cfg_scale")
        request.seed = try body.int64("seed")
        if let sampler = try body.string("sampler_name") ?? body.string("sampler_index"), !sampler.isEmpty {
            request.sampler = sampler
        }
        if let scheduler = try body.string("scheduler"), !scheduler.isEmpty { request.scheduler = scheduler }
        let batchSize = try body.int("batch_size") ?? 1
        let iterations = try body.int("n_iter") ?? 1
        guard batchSize >= 1 else { throw EaselError.invalid("batch_size", "must be 1 or more, not \(batchSize)") }
        guard iterations >= 1 else { throw EaselError.invalid("n_iter", "must be 1 or more, not \(iterations)") }
        request.batchSize = batchSize * iterations
        request.outputFormat = "png"

        // The model: override_settings first, then the dialect's current checkpoint.
        let overrides = try body.object("override_settings")
        if let name = try overrides?.string("sd_model_checkpoint"), !name.isEmpty {
            request.model = try await resolveCheckpoint(name, field: "override_settings.sd_model_checkpoint").id
        } else {
            request.model = await state.currentModelID()
        }

        if img2img {
            guard let images = try body.array("init_images"), let first = images.first else {
                throw EaselError.invalid("init_images", "must hold at least one base64-encoded image")
            }
            guard let image = first as? String else { throw EaselError.invalid("init_images", "must be a list of base64 strings") }
            request.initImage = image
            request.denoisingStrength = try body.double("denoising_strength")
            if let mode = try body.int("resize_mode") {
                switch mode {
                case 0, 3: request.resizeMode = ResizeMode.resize.rawValue
                case 1: request.resizeMode = ResizeMode.crop.rawValue
                case 2: request.resizeMode = ResizeMode.fill.rawValue
                default: throw EaselError.invalid("resize_mode", "must be 0 (resize), 1 (crop), 2 (fill) or 3, not \(mode)")
                }
            }
            if let mask = try body.string("mask"), !mask.isEmpty {
                request.mask = mask
                request.maskBlur = try body.int("mask_blur")
                request.invertMask = try body.bool("inpainting_mask_invert")
                request.inpaintFullRes = try body.bool("inpaint_full_res")
                request.inpaintFullResPadding = try body.int("inpaint_full_res_padding")
            }
        } else if try body.bool("enable_hr") == true {
            var hires = HiresRequest()
            let resizeX = try body.int("hr_resize_x") ?? 0
            let resizeY = try body.int("hr_resize_y") ?? 0
            if resizeX > 0 { hires.width = resizeX }
            if resizeY > 0 { hires.height = resizeY }
            hires.scale = try body.double("hr_scale")
            if let upscaler = try body.string("hr_upscaler"), !upscaler.isEmpty, upscaler != "None" {
                hires.upscaler = Upscaler.named(upscaler) ?? (upscaler.lowercased().hasPrefix("latent") ? "Latent" : "Lanczos")
            }
            hires.steps = try body.int("hr_second_pass_steps")
            hires.denoisingStrength = try body.double("denoising_strength")
            request.hires = hires
        }
        return request
    }

    /// A1111 echoes the request with its defaults filled in; this echoes what the client
    /// sent with the values Easel resolved, leaving out the images it sent.
    private func parameters(_ body: LooseJSON, spec: GenerationSpec, img2img: Bool) -> [String: Any] {
        var echo = body.fields
        echo["init_images"] = img2img ? NSNull() : nil
        if echo["mask"] != nil { echo["mask"] = NSNull() }
        echo["prompt"] = body.fields["prompt"] ?? ""
        echo["negative_prompt"] = spec.negativePrompt
        echo["seed"] = spec.seeds.first.map { Int64($0) } ?? -1
        echo["steps"] = spec.steps
        echo["cfg_scale"] = spec.cfgScale
        echo["width"] = spec.width
        echo["height"] = spec.height
        echo["sampler_name"] = spec.sampler
        echo["scheduler"] = Scheduler.named(spec.scheduler)?.label ?? spec.scheduler
        echo["batch_size"] = body.fields["batch_size"] ?? 1
        echo["n_iter"] = body.fields["n_iter"] ?? 1
        return echo
    }

    /// `info`: a JSON string, as A1111 returns it (clients `json.loads` it).
    static func infoString(_ spec: GenerationSpec, images: Int, interrupted: Bool) -> String {
        let seeds = spec.seeds.map { Int64($0) }
        let count = spec.seeds.count
        let stamp = DateFormatter()
        stamp.dateFormat = "yyyyMMddHHmmss"
        stamp.timeZone = TimeZone(identifier: "UTC")
        let info: [String: Any] = [
            "prompt": spec.prompt, "all_prompts": Array(repeating: spec.prompt, count: count),
            "negative_prompt": spec.negativePrompt, "all_negative_prompts": Array(repeating: spec.negativePrompt, count: count),
            "seed": seeds.first ?? -1, "all_seeds": seeds, "subseed": seeds.first ?? -1, "all_subseeds": seeds,
            "subseed_strength": 0, "width": spec.outputWidth, "height": spec.outputHeight,
            "sampler_name": spec.sampler, "scheduler": Scheduler.named(spec.scheduler)?.label ?? spec.scheduler,
            "cfg_scale": spec.cfgScale, "steps": spec.steps, "batch_size": count, "n_iter": 1,
            "restore_faces": false, "face_restoration_model": NSNull(), "sd_model_name": spec.modelID,
            "sd_model_hash": NSNull(), "sd_vae_name": NSNull(), "sd_vae_hash": NSNull(),
            "seed_resize_from_w": -1, "seed_resize_from_h": -1,
            "denoising_strength": orNull(spec.initImage?.denoisingStrength ?? spec.hires?.denoisingStrength),
            "extra_generation_params": [String: Any](), "index_of_first_image": 0,
            "infotexts": (0..<min(images, count)).map { spec.infotext(forImage: $0, version: EaselVersion.current) },
            "styles": [String](), "job_timestamp": stamp.string(from: Date()), "clip_skip": 1,
            "is_using_inpainting_conditioning": spec.initImage?.mask != nil, "version": "Easel \(EaselVersion.current)",
            "interrupted": interrupted,
        ]
        return String(decoding: LooseResponse.data(info), as: UTF8.self)
    }

    // MARK: - Options and models

    /// The model a checkpoint name refers to, rescanning the folder once on a miss.
    private func resolveCheckpoint(_ name: String, field: String) async throws -> ModelEntry {
        if let entry = CheckpointNames.resolve(name, in: await engine.listModels().map(\.entry)) { return entry }
        if let entry = CheckpointNames.resolve(name, in: await engine.refresh()) { return entry }
        throw EaselError(.modelNotFound, "model '\(name)' not found; GET /sdapi/v1/sd-models lists the titles", field: field)
    }

    @Sendable func options(_ request: Request, context: Context) async throws -> Response {
        var options: [String: Any] = [
            "sd_model_checkpoint": NSNull(), "sd_checkpoint_hash": NSNull(), "sd_vae": "Automatic",
            "CLIP_stop_at_last_layers": 1, "samples_format": "png", "sd_checkpoints_limit": engine.settings.maxLoadedModels,
            "sd_checkpoints_keep_in_cpu": false, "live_previews_enable": true,
            "show_progress_every_n_steps": engine.settings.previewEvery, "eta_noise_seed_delta": 0,
            "img2img_fix_steps": false, "enable_pnginfo": true, "upscaler_for_img2img": NSNull(),
        ]
        for (key, value) in await state.storedOptions { options[key] = value.value }
        if let modelID = await state.currentModelID(), let entry = try? await engine.resolve(modelID) {
            options["sd_model_checkpoint"] = CheckpointNames.title(entry)
            options["sd_checkpoint_hash"] = CheckpointNames.sha256(entry)
        }
        return LooseResponse.make(options)
    }

    /// Sets options; `sd_model_checkpoint` switches (and loads) the model the next
    /// generations use. Open WebUI posts the whole dict back, so every other key is
    /// accepted and echoed by GET.
    @Sendable func setOptions(_ request: Request, context: Context) async throws -> Response {
        let body = try LooseJSON.parse(Data(buffer: try await request.body.collect(upTo: settings.maxBodyBytes)))
        var switchTo: ModelEntry?
        if let name = try body.string("sd_model_checkpoint"), !name.isEmpty {
            let entry = try await resolveCheckpoint(name, field: "sd_model_checkpoint")
            if entry.id != (await state.currentModelID()) { switchTo = entry }
        }
        var others: [String: JSONFragment] = [:]
        for (key, value) in body.fields where !["sd_model_checkpoint", "sd_checkpoint_hash"].contains(key) {
            if let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed]) {
                others[key] = JSONFragment(data: data)
            }
        }
        await state.storeOptions(others)
        if let switchTo {
            _ = try await engine.load(switchTo.id, keepAlive: nil)
            await state.setCheckpoint(switchTo.id)
        }
        return LooseResponse.make(any: NSNull())
    }

    @Sendable func sdModels(_ request: Request, context: Context) async throws -> Response {
        let models = await engine.listModels().filter { $0.entry.problem == nil }.map { listing -> [String: Any] in
            let entry = listing.entry
            return [
                "title": CheckpointNames.title(entry), "model_name": entry.id, "hash": CheckpointNames.hash(entry),
                "sha256": CheckpointNames.sha256(entry), "filename": entry.path, "config": NSNull(),
            ]
        }
        return LooseResponse.make(models)
    }

    @Sendable func refreshCheckpoints(_ request: Request, context: Context) async throws -> Response {
        await engine.refresh()
        return LooseResponse.make(any: NSNull())
    }

    @Sendable func unloadCheckpoint(_ request: Request, context: Context) async throws -> Response {
        for listing in await engine.listModels() where listing.runtime.state != .unloaded {
            _ = try await engine.unload(listing.entry.id)
        }
        return LooseResponse.make(any: NSNull())
    }

    @Sendable func reloadCheckpoint(_ request: Request, context: Context) async throws -> Response {
        if let modelID = await state.currentModelID() { _ = try await engine.load(modelID, keepAlive: nil) }
        return LooseResponse.make(any: NSNull())
    }

    // MARK: - Lists

    @Sendable func samplers(_ request: Request, context: Context) async throws -> Response {
        LooseResponse.make(Sampler.all.map { ["name": $0.name, "aliases": $0.aliases, "options": [String: String]()] as [String: Any] })
    }

    @Sendable func schedulers(_ request: Request, context: Context) async throws -> Response {
        LooseResponse.make(Scheduler.all.map {
            ["name": $0.name, "label": $0.label, "aliases": NSNull(), "default_rho": -1, "need_inner_model": false] as [String: Any]
        })
    }

    @Sendable func upscalers(_ request: Request, context: Context) async throws -> Response {
        let names = ["None"] + Upscaler.all.filter { !$0.hasPrefix("Latent") }
        return LooseResponse.make(names.map {
            ["name": $0, "model_name": NSNull(), "model_path": NSNull(), "model_url": NSNull(), "scale": 4] as [String: Any]
        })
    }

    @Sendable func latentUpscaleModes(_ request: Request, context: Context) async throws -> Response {
        LooseResponse.make(Upscaler.all.filter { $0.hasPrefix("Latent") }.map { ["name": $0] })
    }

    @Sendable func loras(_ request: Request, context: Context) async throws -> Response {
        LooseResponse.make(engine.loras.scan().map {
            ["name": $0.name, "alias": $0.name, "path": $0.path, "metadata": [String: Any]()] as [String: Any]
        })
    }

    // MARK: - Progress and control

    @Sendable func progress(_ request: Request, context: Context) async throws -> Response {
        let skipImage = request.uri.queryParameters["skip_current_image"].map { $0 == "true" || $0 == "1" } ?? false
        let (run, runningCount, queuedCount) = await state.current()
        var progress = 0.0
        var eta = 0.0
        var step = 0
        var steps = 0
        var preview: Any = NSNull()
        if let run {
            step = run.job.step
            steps = max(run.job.totalSteps, 1)
            progress = min(0.99, Double(step) / Double(steps))
            // A1111's eta_relative is the total time left; the job's ETA is the same.
            eta = run.etaSeconds ?? 0
            let last = await state.lastPreview
            if !skipImage, let image = run.preview ?? last {
                preview = image.data.base64EncodedString()
            }
        }
        let stamp = run.map { job -> String in
            let formatter = DateFormatter()
            formatter.dateFormat = "yyyyMMddHHmmss"
            formatter.timeZone = TimeZone(identifier: "UTC")
            return formatter.string(from: job.job.startedAt ?? job.job.createdAt)
        }
        return LooseResponse.make([
            "progress": progress, "eta_relative": eta,
            "state": [
                "skipped": false, "interrupted": false, "stopping_generation": false,
                "job": run?.job.id ?? "", "job_count": runningCount + queuedCount, "job_timestamp": stamp ?? "0",
                "job_no": 0, "sampling_step": step, "sampling_steps": steps,
            ] as [String: Any],
            "current_image": preview, "textinfo": NSNull(), "current_task": orNull(run?.job.id),
        ])
    }

    /// Stops the running generation(s), as A1111's global interrupt does. `skip` does
    /// the same: a batch runs as one job here.
    @Sendable func interrupt(_ request: Request, context: Context) async throws -> Response {
        for id in await state.runningIDs() { _ = try? await scheduler.cancel(id: id) }
        return LooseResponse.make([String: Any]())
    }

    @Sendable func memory(_ request: Request, context: Context) async throws -> Response {
        let total = Double(ProcessInfo.processInfo.physicalMemory)
        return LooseResponse.make([
            "ram": ["free": 0, "used": 0, "total": total] as [String: Any],
            "cuda": ["error": "Easel runs models in runner processes; GET /v1/models shows their memory"],
        ])
    }

    @Sendable func cmdFlags(_ request: Request, context: Context) async throws -> Response {
        LooseResponse.make([
            "api": true, "nowebui": true, "listen": settings.host != "127.0.0.1", "port": settings.port,
            "ckpt_dir": settings.modelsURL.path, "lora_dir": settings.lorasURL.path, "api_auth": NSNull(),
        ] as [String: Any])
    }

    /// Reads the `parameters` text chunk of a PNG (what Easel and A1111 write there).
    @Sendable func pngInfo(_ request: Request, context: Context) async throws -> Response {
        let body = try LooseJSON.parse(Data(buffer: try await request.body.collect(upTo: settings.maxBodyBytes)))
        guard let text = try body.string("image"), !text.isEmpty else {
            throw EaselError.invalid("image", "must be a base64-encoded PNG")
        }
        let data = try EncodedImage.decode(text, field: "image")
        let chunks = Self.pngTextChunks(data)
        let info = chunks["parameters"] ?? ""
        var parameters: [String: Any] = [:]
        if let last = info.split(separator: "\n").last {
            for item in last.split(separator: ",") {
                let pair = item.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                if pair.count == 2 { parameters[pair[0]] = pair[1] }
            }
        }
        return LooseResponse.make(["info": info, "items": chunks, "parameters": parameters])
    }

    static func pngTextChunks(_ data: Data) -> [String: String] {
        let bytes = [UInt8](data)
        guard bytes.count > 8, bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) else { return [:] }
        var chunks: [String: String] = [:]
        var offset = 8
        while offset + 8 <= bytes.count {
            let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
            let start = offset + 8
            guard length >= 0, start + length <= bytes.count else { break }
            if type == "tEXt" || type == "iTXt" {
                let payload = Array(bytes[start..<(start + length)])
                if let zero = payload.firstIndex(of: 0) {
                    let key = String(decoding: payload[..<zero], as: UTF8.self)
                    var rest = Array(payload[(zero + 1)...])
                    if type == "iTXt" {
                        // compression flag, method, language\0, translated keyword\0
                        guard rest.count >= 2, rest[0] == 0 else { offset = start + length + 4; continue }
                        rest = Array(rest[2...])
                        for _ in 0..<2 {
                            if let end = rest.firstIndex(of: 0) { rest = Array(rest[(end + 1)...]) }
                        }
                    }
                    chunks[key] = String(decoding: rest, as: UTF8.self)
                }
            }
            if type == "IEND" { break }
            offset = start + length + 4
        }
        return chunks
    }
}

/// An option value a client POSTed, kept as JSON text so it stays `Sendable`.
struct JSONFragment: Sendable {
    let data: Data

    var value: Any { (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) ?? NSNull() }
}

/// Errors in A1111's shape: `{"error", "detail", "body", "errors"}`, 422 for a bad
/// request as FastAPI answers validation errors.
struct A1111ErrorMiddleware: RouterMiddleware {
    typealias Context = EaselRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let easel = ErrorMiddleware<Context>.easelError(for: error, request: request)
            let validation = [.invalidJSON, .invalidField, .unknownField].contains(easel.code)
            let status = validation ? 422 : easel.httpStatus
            return LooseResponse.make(
                [
                    "error": validation ? "RequestValidationError" : "HTTPException", "detail": easel.message,
                    "body": easel.field ?? "", "errors": easel.description, "code": easel.code.rawValue,
                ],
                status: HTTPResponse.Status(code: status)
            )
        }
    }
}
