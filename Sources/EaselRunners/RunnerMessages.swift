import EaselCore
import Foundation

/// The messages of docs/runner-protocol.md, as Swift values.
enum RunnerRequest {
    struct Load: Encodable {
        struct Model: Encodable {
            let id: String
            let path: String
            let format: String
            let architecture: String?
            let configDir: String?
            let vaePath: String?
        }

        let type = "load"
        let id: String
        let model: Model
        let device: String
        let dtype: String
        let threads: Int
        let warmUp: Bool
        let engine: String
        let weightType: String
        let vaeTiling: Bool
    }

    struct Generate: Encodable {
        struct Lora: Encodable {
            let name: String
            let path: String
            let weight: Double
        }

        struct Hires: Encodable {
            let width: Int
            let height: Int
            let upscaler: String
            let steps: Int
            let denoisingStrength: Double
        }

        /// One job's part of a merged call.
        struct Member: Encodable {
            let prompt: String
            let negativePrompt: String
            let seeds: [UInt64]
            let infotexts: [String]

            init(_ spec: GenerationSpec) {
                prompt = spec.prompt
                negativePrompt = spec.negativePrompt
                seeds = spec.seeds
                infotexts = spec.seeds.indices.map { spec.infotext(forImage: $0, version: EaselVersion.current) }
            }
        }

        let type = "generate"
        let id: String
        /// A single job's prompts and seeds at the top level, as before merging existed;
        /// merged jobs' in `members` instead.
        let prompt: String?
        let negativePrompt: String?
        let seeds: [UInt64]?
        let infotexts: [String]?
        let members: [Member]?
        let width: Int
        let height: Int
        let steps: Int
        let cfgScale: Double
        let sampler: String
        let scheduler: String
        let outputFormat: String
        let quality: Int
        let previewEvery: Int
        let loras: [Lora]
        let initImage: Data?
        let denoisingStrength: Double?
        let resizeMode: String?
        let mask: Data?
        let maskBlur: Int?
        let invertMask: Bool?
        let inpaintFullRes: Bool?
        let inpaintFullResPadding: Int?
        let hires: Hires?

        /// One engine call for `specs`, which share everything but their prompts and seeds.
        init(id: String, specs: [GenerationSpec], loraPaths: [String: String], previewEvery: Int) {
            self.id = id
            let spec = specs[0]
            let single = specs.count == 1 ? Member(spec) : nil
            prompt = single?.prompt
            negativePrompt = single?.negativePrompt
            seeds = single?.seeds
            infotexts = single?.infotexts
            members = single == nil ? specs.map(Member.init) : nil
            width = spec.width
            height = spec.height
            steps = spec.steps
            cfgScale = spec.cfgScale
            sampler = spec.sampler
            scheduler = spec.scheduler
            outputFormat = spec.outputFormat.rawValue
            quality = spec.quality
            self.previewEvery = previewEvery
            loras = spec.loras.map { Lora(name: $0.name, path: loraPaths[$0.name] ?? $0.name, weight: $0.weight) }
            initImage = spec.initImage?.image
            denoisingStrength = spec.initImage?.denoisingStrength
            resizeMode = spec.initImage?.resizeMode.rawValue
            let mask = spec.initImage?.mask
            self.mask = mask?.image
            maskBlur = mask?.blur
            invertMask = mask?.invert
            inpaintFullRes = mask?.onlyMasked
            inpaintFullResPadding = mask?.padding
            hires = spec.hires.map {
                Hires(width: $0.width, height: $0.height, upscaler: $0.upscaler, steps: $0.steps, denoisingStrength: $0.denoisingStrength)
            }
        }
    }

    struct Control: Encodable {
        let type: String
        let id: String?
    }
}

/// Everything a runner can send.
enum RunnerEvent: Sendable {
    case hello(RunnerHello)
    case loaded(LoadedModel)
    /// `memberPreviews`: a merged call's previews, one per member, in place of `preview`.
    case progress(id: String, GenerationProgress, memberPreviews: [GenerationProgress.Preview?]?)
    case result(id: String, GenerationResult)
    case failure(id: String?, code: String, message: String, field: String?)
    case pong(id: String)
    case bye

    private struct Envelope: Decodable {
        let type: String
        let id: String?
    }

    private struct Progress: Decodable {
        let step: Int
        let total: Int
        let preview: GenerationProgress.Preview?
        let previews: [GenerationProgress.Preview?]?
    }

    private struct Failure: Decodable {
        let code: String
        let message: String
        let field: String?
    }

    static func decode(_ payload: Data) throws -> RunnerEvent {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let envelope = try decoder.decode(Envelope.self, from: payload)
        func requireID() throws -> String {
            guard let id = envelope.id else { throw Frame.Malformed(description: "'\(envelope.type)' without an id") }
            return id
        }
        switch envelope.type {
        case "hello": return .hello(try decoder.decode(RunnerHello.self, from: payload))
        case "loaded": return .loaded(try decoder.decode(LoadedModel.self, from: payload))
        case "progress":
            let progress = try decoder.decode(Progress.self, from: payload)
            return .progress(
                id: try requireID(), GenerationProgress(step: progress.step, total: progress.total, preview: progress.preview),
                memberPreviews: progress.previews
            )
        case "result": return .result(id: try requireID(), try decoder.decode(GenerationResult.self, from: payload))
        case "error":
            let failure = try decoder.decode(Failure.self, from: payload)
            return .failure(id: envelope.id, code: failure.code, message: failure.message, field: failure.field)
        case "pong": return .pong(id: try requireID())
        case "bye": return .bye
        default: throw Frame.Malformed(description: "unknown message type '\(envelope.type)'")
        }
    }
}

/// The runner's greeting: what it is and what it can do.
public struct RunnerHello: Decodable, Sendable, Equatable {
    public let `protocol`: Int
    public let runnerVersion: String
    public let pid: Int32
    public let engines: [String]
    public let device: String
    public let deviceName: String?
    public let torchVersion: String?
    public let samplers: [String]
    public let schedulers: [String]?
    public let upscalers: [String]?
    public let architectures: [String]?
    public let features: [String]?
    public let weightTypes: [String]?
    /// How a running generation stops: `step` (at the next step, the default) or `exit`
    /// (the engine cannot stop; the server ends the runner).
    public let cancel: String?

    /// Whether cancelling a running generation means ending this runner.
    public var cancelEndsRunner: Bool { cancel == "exit" }
}

/// A runner's answer to `load`.
public struct LoadedModel: Decodable, Sendable, Equatable {
    public let id: String
    /// The engine that loaded it; absent from runners older than engine choice.
    public var engine: String? = nil
    public let modelId: String
    public let architecture: String?
    public let device: String
    public let dtype: String
    public let loadSeconds: Double
    /// Seconds of the warm-up generation, part of `loadSeconds`; nil when it was skipped.
    public var warmupSeconds: Double? = nil
    public let loadCount: Int
    public let memoryBytes: Int64
    /// CUDA memory the runner's torch holds; nil on CPU.
    public var gpuMemoryBytes: Int64? = nil
}

/// A runner's answer to `generate`.
public struct GenerationResult: Decodable, Sendable {
    public struct Image: Decodable, Sendable {
        public let seed: UInt64
        public let format: ImageFormat
        public let width: Int
        public let height: Int
        /// The encoded image (base64 on the wire).
        public let data: Data
        /// The member of a merged call the image belongs to; nil for a single job's call.
        public var member: Int? = nil
    }

    public let engineSeconds: Double
    public let images: [Image]

    /// The images of each member of a call for `seedCounts` images per member, or nil
    /// when they do not add up to that.
    func imagesByMember(seedCounts: [Int]) -> [[Image]]? {
        if seedCounts.count == 1 {
            return images.count == seedCounts[0] && images.allSatisfy({ $0.member == nil }) ? [images] : nil
        }
        var byMember = Array(repeating: [Image](), count: seedCounts.count)
        for image in images {
            guard let member = image.member, byMember.indices.contains(member) else { return nil }
            byMember[member].append(image)
        }
        return byMember.map(\.count) == seedCounts ? byMember : nil
    }
}
