import Foundation

/// A generation request's life on the server, from queued to a final state.
public struct Job: Codable, Sendable, Equatable, Identifiable {
    public enum State: String, Codable, Sendable, CaseIterable {
        case queued, running, succeeded, failed, cancelled

        public var isFinal: Bool { self == .succeeded || self == .failed || self == .cancelled }
    }

    /// What went wrong, as the client sees it.
    public struct Failure: Codable, Sendable, Equatable {
        public var code: String
        public var message: String
        /// The request field at fault, when there is one.
        public var field: String?

        public init(code: String, message: String, field: String? = nil) {
            self.code = code
            self.message = message
            self.field = field
        }

        public init(_ error: EaselError) {
            self.init(code: error.code.rawValue, message: error.message, field: error.field)
        }

        /// The failure as the error a client of a synchronous request gets.
        public var error: EaselError {
            EaselError(EaselError.Code(rawValue: code) ?? .internalError, message, field: field)
        }
    }

    /// One generated image, stored as a file beside the database.
    public struct Image: Codable, Sendable, Equatable {
        /// `<job id>-<index>`: what `GET /v1/images/{id}` takes.
        public var id: String
        public var index: Int
        public var seed: UInt64
        public var format: ImageFormat
        public var width: Int
        public var height: Int
        public var byteCount: Int

        public init(id: String, index: Int, seed: UInt64, format: ImageFormat, width: Int, height: Int, byteCount: Int) {
            self.id = id
            self.index = index
            self.seed = seed
            self.format = format
            self.width = width
            self.height = height
            self.byteCount = byteCount
        }
    }

    public var id: String
    public var state: State
    /// Higher runs first; equal priorities run in submission order.
    public var priority: Int
    public var spec: GenerationSpec
    public var webhook: String?
    public var batchID: String?
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var step: Int
    public var totalSteps: Int
    public var failure: Failure?
    public var images: [Image]
    /// The outcome of delivering the webhook, when there is one.
    public var webhookStatus: String?
    public var timings: GenerationTimings?
    public var runner: RunnerInfo?

    public init(id: String, priority: Int, spec: GenerationSpec, webhook: String? = nil, batchID: String? = nil, createdAt: Date = Date()) {
        self.id = id
        self.state = .queued
        self.priority = priority
        self.spec = spec
        self.webhook = webhook
        self.batchID = batchID
        self.createdAt = createdAt
        self.step = 0
        self.totalSteps = spec.steps
        self.images = []
    }

    /// A fresh job id: random, URL-safe, and unguessable enough to act as a capability.
    public static func newID() -> String {
        "job_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
    }
}

/// The time a generation spent in each phase, in seconds.
public struct GenerationTimings: Codable, Sendable, Equatable {
    public var queueSeconds: Double
    public var loadSeconds: Double
    public var engineSeconds: Double
    public var totalSeconds: Double
    /// Jobs that ran in the same engine call, this one included (1: it ran alone); the
    /// call's `engineSeconds` are theirs together. Nil in records made before merging.
    public var mergedJobs: Int?

    public init(queueSeconds: Double, loadSeconds: Double, engineSeconds: Double, totalSeconds: Double, mergedJobs: Int? = nil) {
        self.queueSeconds = queueSeconds
        self.loadSeconds = loadSeconds
        self.engineSeconds = engineSeconds
        self.totalSeconds = totalSeconds
        self.mergedJobs = mergedJobs
    }
}

/// Which jobs a listing wants, newest first.
public struct JobFilter: Sendable, Equatable {
    public var state: Job.State?
    public var model: String?
    public var since: Date?
    public var batchID: String?
    public var limit: Int
    public var offset: Int

    public init(state: Job.State? = nil, model: String? = nil, since: Date? = nil, batchID: String? = nil, limit: Int = 50, offset: Int = 0) {
        self.state = state
        self.model = model
        self.since = since
        self.batchID = batchID
        self.limit = limit
        self.offset = offset
    }
}

/// Where jobs and their images are kept. The scheduler sees only this interface, so the
/// embedded SQLite store and a shared PostgreSQL one are interchangeable.
public protocol JobStore: Sendable {
    /// Adds a new job or replaces the stored one with the same id.
    func save(_ job: Job) async throws
    func job(id: String) async throws -> Job?
    func jobs(matching filter: JobFilter) async throws -> [Job]
    /// Jobs that were queued or running when the server last stopped, oldest first.
    func unfinishedJobs() async throws -> [Job]
    /// Stores an image's bytes; `image.id` names it.
    func saveImage(_ image: Job.Image, data: Data) async throws
    func imageData(id: String) async throws -> Data?
    /// Deletes the oldest finished jobs and their images until none is older than
    /// `maxAge` and the images take at most `maxBytes`; returns the deleted job ids.
    func enforceRetention(maxAge: TimeInterval, maxBytes: Int64, now: Date) async throws -> [String]
}
