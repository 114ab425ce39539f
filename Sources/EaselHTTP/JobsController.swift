import EaselCore
import EaselRunners
import Foundation
import Hummingbird
import NIOCore

/// The asynchronous job API: submit, inspect, list, cancel, follow events, fetch images.
struct JobsController {
    let engine: Engine
    let scheduler: JobScheduler
    let converter: ImageConverter
    let settings: Settings

    typealias Context = EaselRequestContext

    func addRoutes(to router: Router<Context>) {
        router.post("/v1/jobs", use: submit)
        router.get("/v1/jobs", use: list)
        router.get("/v1/jobs/:id", use: show)
        router.post("/v1/jobs/:id/cancel", use: cancel)
        router.delete("/v1/jobs/:id", use: cancel)
        router.get("/v1/jobs/:id/events", use: events)
        router.get("/v1/batches/:id", use: batch)
        router.get("/v1/images/:id", use: image)
    }

    struct BatchDocument: Encodable {
        let object = "batch"
        let id: String
        let jobCount: Int
        let states: [String: Int]
        let jobs: [JobDocument]
    }

    struct JobList: Encodable {
        let object = "list"
        let data: [JobDocument]
        let limit: Int
        let offset: Int
    }

    @Sendable func submit(_ request: Request, context: Context) async throws -> Response {
        let body = try await request.body.collect(upTo: settings.maxBodyBytes)
        let jobRequest = try JobRequest.decode(from: Data(buffer: body))
        let priority = try jobRequest.validatedPriority()
        let webhook = try jobRequest.validatedWebhook()
        let specs = try await jobRequest.expanded(maxJobs: settings.maxQueue).asyncMap { try await engine.prepare($0) }
        let batchID = specs.count > 1 ? "batch_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased() : nil
        let jobs = specs.map { Job(id: Job.newID(), priority: priority, spec: $0, webhook: webhook, batchID: batchID) }
        let snapshots = try await scheduler.submit(jobs)
        guard let batchID else {
            var response = JSONResponse.make(JobDocument(snapshots[0]), status: .accepted)
            response.headers[.location] = "/v1/jobs/\(snapshots[0].job.id)"
            return response
        }
        var response = JSONResponse.make(Self.batchDocument(batchID, snapshots), status: .accepted)
        response.headers[.location] = "/v1/batches/\(batchID)"
        return response
    }

    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        JSONResponse.make(JobDocument(try await scheduler.snapshot(id: try context.parameters.require("id"))))
    }

    @Sendable func cancel(_ request: Request, context: Context) async throws -> Response {
        JSONResponse.make(JobDocument(try await scheduler.cancel(id: try context.parameters.require("id"))))
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let query = request.uri.queryParameters
        var filter = JobFilter()
        if let state = query["state"].map(String.init) {
            guard let parsed = Job.State(rawValue: state) else {
                throw EaselError.invalid("state", "must be one of \(Job.State.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            filter.state = parsed
        }
        filter.model = query["model"].map(String.init)
        if let since = query["since"].map(String.init) {
            guard let date = Self.parseDate(since) else {
                throw EaselError.invalid("since", "must be an ISO 8601 time (2026-01-31T12:00:00Z) or Unix seconds")
            }
            filter.since = date
        }
        filter.limit = try Self.integer(query["limit"], name: "limit", range: 1...200) ?? 50
        filter.offset = try Self.integer(query["offset"], name: "offset", range: 0...Int.max) ?? 0
        let jobs = try await scheduler.store.jobs(matching: filter)
        var documents: [JobDocument] = []
        for job in jobs {
            let live = job.state.isFinal ? JobSnapshot(job: job) : (try? await scheduler.snapshot(id: job.id)) ?? JobSnapshot(job: job)
            documents.append(JobDocument(live))
        }
        return JSONResponse.make(JobList(data: documents, limit: filter.limit, offset: filter.offset))
    }

    @Sendable func batch(_ request: Request, context: Context) async throws -> Response {
        let id = try context.parameters.require("id")
        let jobs = try await scheduler.store.jobs(matching: JobFilter(batchID: id, limit: settings.maxQueue + 1000))
        guard !jobs.isEmpty else { throw EaselError(.jobNotFound, "no batch '\(id)'") }
        var snapshots: [JobSnapshot] = []
        for job in jobs.reversed() { snapshots.append((try? await scheduler.snapshot(id: job.id)) ?? JobSnapshot(job: job)) }
        return JSONResponse.make(Self.batchDocument(id, snapshots))
    }

    /// Server-Sent Events: the job's current state first, then every change until it ends.
    @Sendable func events(_ request: Request, context: Context) async throws -> Response {
        let stream = try await scheduler.events(jobID: try context.parameters.require("id"))
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                for await event in stream {
                    try await writer.write(ByteBuffer(string: Self.serverSentEvent(event)))
                }
                try await writer.finish(nil)
            }
        )
    }

    @Sendable func image(_ request: Request, context: Context) async throws -> Response {
        let id = try context.parameters.require("id")
        guard let record = try await Self.imageRecord(id, store: scheduler.store),
            let data = try await scheduler.store.imageData(id: id)
        else {
            throw EaselError(.imageNotFound, "no image '\(id)'; image ids come from a job's images[].id")
        }
        var format = record.format
        var bytes = data
        if let wanted = request.uri.queryParameters["format"].map(String.init) {
            guard let target = ImageFormat(name: wanted) else {
                throw EaselError.invalid("format", "must be png, jpeg or webp, not '\(wanted)'")
            }
            if target != format {
                bytes = try await converter.convert(data, to: target)
                format = target
            }
        }
        return Response(
            status: .ok,
            headers: [.contentType: format.mediaType, .cacheControl: "private, max-age=86400"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes))
        )
    }

    static func serverSentEvent(_ event: JobEvent) -> String {
        "event: \(event.kind.rawValue)\ndata: \(JSONResponse.encode(JobEventDocument(event)))\n\n"
    }

    static func imageRecord(_ id: String, store: any JobStore) async throws -> Job.Image? {
        guard let dash = id.lastIndex(of: "-") else { return nil }
        return try await store.job(id: String(id[..<dash]))?.images.first { $0.id == id }
    }

    static func batchDocument(_ id: String, _ snapshots: [JobSnapshot]) -> BatchDocument {
        BatchDocument(
            id: id, jobCount: snapshots.count,
            states: Dictionary(grouping: snapshots, by: \.job.state.rawValue).mapValues(\.count),
            jobs: snapshots.map(JobDocument.init)
        )
    }

    static func integer(_ text: Substring?, name: String, range: ClosedRange<Int>) throws -> Int? {
        guard let text else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw EaselError.invalid(name, "must be an integer between \(range.lowerBound) and \(range.upperBound)")
        }
        return value
    }

    static func parseDate(_ text: String) -> Date? {
        if let seconds = Double(text) { return Date(timeIntervalSince1970: seconds) }
        return ISO8601DateFormatter().date(from: text)
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        results.reserveCapacity(count)
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
