import EaselCore
import Foundation

/// A job as the API shows it: stored state plus live queue position and ETA.
struct JobDocument: Encodable {
    struct Image: Encodable {
        let id: String
        let url: String
        let index: Int
        let seed: UInt64
        let format: ImageFormat
        let width: Int
        let height: Int

        init(_ image: Job.Image) {
            id = image.id
            url = "/v1/images/\(image.id)"
            index = image.index
            seed = image.seed
            format = image.format
            width = image.width
            height = image.height
        }
    }

    struct Webhook: Encodable {
        let url: String
        let status: String?
    }

    let object = "job"
    let id: String
    let state: Job.State
    let priority: Int
    let model: String
    let batchId: String?
    let createdAt: Date
    let startedAt: Date?
    let finishedAt: Date?
    let step: Int
    let totalSteps: Int
    let progress: Double
    let etaSeconds: Double?
    let queuePosition: Int?
    let error: Job.Failure?
    let images: [Image]
    let parameters: ParametersDocument
    let webhook: Webhook?
    let timings: GenerationTimings?
    let runner: RunnerInfo?

    init(_ snapshot: JobSnapshot) {
        let job = snapshot.job
        id = job.id
        state = job.state
        priority = job.priority
        model = job.spec.modelID
        batchId = job.batchID
        createdAt = job.createdAt
        startedAt = job.startedAt
        finishedAt = job.finishedAt
        step = job.step
        totalSteps = job.totalSteps
        progress = job.state == .succeeded ? 1 : job.totalSteps > 0 ? Double(job.step) / Double(job.totalSteps) : 0
        etaSeconds = snapshot.etaSeconds
        queuePosition = snapshot.queuePosition
        error = job.failure
        images = job.images.map(Image.init)
        parameters = ParametersDocument(job.spec)
        webhook = job.webhook.map { Webhook(url: $0, status: job.webhookStatus) }
        timings = job.timings
        runner = job.runner
    }
}

/// The resolved parameters of a generation, as responses echo them.
struct ParametersDocument: Encodable {
    let model: String
    let prompt: String
    let negativePrompt: String
    let width: Int
    let height: Int
    let steps: Int
    let cfgScale: Double
    let sampler: String
    let scheduler: String
    let seed: UInt64
    let seeds: [UInt64]
    let batchSize: Int
    let outputFormat: ImageFormat
    let quality: Int
    let loras: [GenerationSpec.Lora]
    /// Set for img2img and inpainting; the images themselves are not echoed.
    let denoisingStrength: Double?
    let resizeMode: ResizeMode?
    let inpainting: Bool
    let hires: GenerationSpec.Hires?
    /// Absent for jobs stored before engines could be chosen.
    let engine: String?

    init(_ spec: GenerationSpec) {
        model = spec.modelID
        prompt = spec.prompt
        negativePrompt = spec.negativePrompt
        width = spec.width
        height = spec.height
        steps = spec.steps
        cfgScale = spec.cfgScale
        sampler = spec.sampler
        scheduler = spec.scheduler
        seed = spec.seeds[0]
        seeds = spec.seeds
        batchSize = spec.batchSize
        outputFormat = spec.outputFormat
        quality = spec.quality
        loras = spec.loras
        denoisingStrength = spec.initImage?.denoisingStrength
        resizeMode = spec.initImage?.resizeMode
        inpainting = spec.initImage?.mask != nil
        hires = spec.hires
        engine = spec.engine
    }
}

/// One event of a job's stream, as SSE `data` and WebSocket messages carry it.
struct JobEventDocument: Encodable {
    struct Preview: Encodable {
        let format: ImageFormat
        let width: Int
        let height: Int
        let base64: String
    }

    let type: JobEvent.Kind
    let jobId: String
    let state: Job.State
    let step: Int
    let totalSteps: Int
    let etaSeconds: Double?
    let queuePosition: Int?
    let preview: Preview?
    /// The whole job, except on progress events.
    let job: JobDocument?

    init(_ event: JobEvent) {
        type = event.kind
        jobId = event.snapshot.job.id
        state = event.snapshot.job.state
        step = event.snapshot.job.step
        totalSteps = event.snapshot.job.totalSteps
        etaSeconds = event.snapshot.etaSeconds
        queuePosition = event.snapshot.queuePosition
        preview = event.preview.map {
            Preview(format: $0.format, width: $0.width, height: $0.height, base64: $0.data.base64EncodedString())
        }
        job = event.kind == .progress ? nil : JobDocument(event.snapshot)
    }
}
