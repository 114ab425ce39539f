import Crypto
import EaselCore
import EaselRunners
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A JSON object read leniently, as the AUTOMATIC1111, OpenAI and stable-diffusion.cpp
/// dialects need: unknown fields are ignored (their clients send many), `null` counts as
/// absent, and a value of the wrong type is an ``EaselError`` that names the field.
struct LooseJSON: @unchecked Sendable {
    let fields: [String: Any]
    /// Prefix for field names in errors (`sample_params.`).
    let path: String

    init(_ fields: [String: Any], path: String = "") {
        self.fields = fields
        self.path = path
    }

    static func parse(_ data: Data) throws -> LooseJSON {
        guard !data.isEmpty else { return LooseJSON([:]) }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw EaselError(.invalidJSON, "the body is not valid JSON")
        }
        if object is NSNull { return LooseJSON([:]) }
        guard let fields = object as? [String: Any] else {
            throw EaselError(.invalidJSON, "the body must be a JSON object")
        }
        return LooseJSON(fields)
    }

    func has(_ key: String) -> Bool { value(key) != nil }

    func value(_ key: String) -> Any? {
        guard let value = fields[key], !(value is NSNull) else { return nil }
        return value
    }

    private func bad(_ key: String, _ what: String) -> EaselError {
        EaselError.invalid(path + key, "must be \(what)")
    }

    func string(_ key: String) throws -> String? {
        guard let value = value(key) else { return nil }
        guard let string = value as? String else { throw bad(key, "a string") }
        return string
    }

    func double(_ key: String) throws -> Double? {
        guard let value = value(key) else { return nil }
        if let string = value as? String, let number = Double(string) { return number }
        guard type(of: value) != Bool.self, let number = value as? NSNumber else { throw bad(key, "a number") }
        return number.doubleValue
    }

    func int64(_ key: String) throws -> Int64? {
        guard let value = value(key) else { return nil }
        if let string = value as? String, let number = Int64(string) { return number }
        guard type(of: value) != Bool.self, let number = value as? NSNumber else { throw bad(key, "an integer") }
        let double = number.doubleValue
        guard double.isFinite, double == double.rounded(), abs(double) < 9.0e18 else { throw bad(key, "an integer") }
        return number.int64Value
    }

    func int(_ key: String) throws -> Int? {
        guard let value = try int64(key) else { return nil }
        guard let int = Int(exactly: value) else { throw bad(key, "an integer") }
        return int
    }

    func bool(_ key: String) throws -> Bool? {
        guard let value = value(key) else { return nil }
        if let bool = value as? Bool { return bool }
        if let number = value as? NSNumber { return number.intValue != 0 }
        if let string = value as? String {
            switch string.lowercased() {
            case "true", "1", "yes", "on": return true
            case "false", "0", "no", "off", "": return false
            default: break
            }
        }
        throw bad(key, "true or false")
    }

    func object(_ key: String) throws -> LooseJSON? {
        guard let value = value(key) else { return nil }
        guard let object = value as? [String: Any] else { throw bad(key, "an object") }
        return LooseJSON(object, path: path + key + ".")
    }

    func array(_ key: String) throws -> [Any]? {
        guard let value = value(key) else { return nil }
        guard let array = value as? [Any] else { throw bad(key, "a list") }
        return array
    }
}

/// Serialises `[String: Any]` bodies (the dialects' documents mix types freely).
enum LooseResponse {
    static func data(_ object: Any) -> Data {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed]))
            ?? Data("null".utf8)
    }

    static func make(_ object: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
        make(any: object, status: status)
    }

    static func make(_ list: [Any], status: HTTPResponse.Status = .ok) -> Response {
        make(any: list, status: status)
    }

    static func make(any object: Any, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data(object)))
        )
    }
}

/// `value`, or JSON `null`.
func orNull(_ value: Any?) -> Any { value ?? NSNull() }

/// Runs a dialect's request on the job queue exactly as `POST /v1/txt2img` does, and
/// returns the finished job with its image bytes.
enum DialectGeneration {
    static func run(
        _ request: GenerationRequest, engine: Engine, scheduler: JobScheduler, settings: Settings,
        context: EaselRequestContext
    ) async throws -> (job: Job, images: [(record: Job.Image, data: Data)]) {
        let spec = try await engine.prepare(request)
        let job = try await GenerationController.run(
            spec, scheduler: scheduler, context: context, cancelOnDisconnect: settings.cancelOnDisconnect
        )
        return (job, try await images(of: job, store: scheduler.store))
    }

    static func images(of job: Job, store: any JobStore) async throws -> [(record: Job.Image, data: Data)] {
        var images: [(record: Job.Image, data: Data)] = []
        for record in job.images {
            guard let data = try await store.imageData(id: record.id) else {
                throw EaselError(.internalError, "image \(record.id) of job \(job.id) is missing from the store")
            }
            images.append((record, data))
        }
        return images
    }

    /// `http://host` as the client reached the server (for absolute image URLs).
    static func origin(of request: Request, settings: Settings) -> String {
        let forwardedProto = request.headers[HTTPField.Name("X-Forwarded-Proto")!]
        let scheme = forwardedProto ?? "http"
        let host = request.head.authority ?? request.headers[HTTPField.Name("Host")!] ?? "\(settings.host):\(settings.port)"
        return "\(scheme)://\(host)"
    }
}

/// State the compatibility dialects share, in one place: AUTOMATIC1111's current
/// checkpoint and options, and what the queue is doing now (for `/sdapi/v1/progress`),
/// followed from the scheduler's event stream. It runs as a service for the server's
/// lifetime.
actor DialectState: Service {
    struct Running {
        var job: Job
        var etaSeconds: Double?
        var preview: GenerationProgress.Preview?
    }

    let engine: Engine
    let scheduler: JobScheduler
    /// The model AUTOMATIC1111 clients selected with `sd_model_checkpoint`; nil: the
    /// server's default model.
    private(set) var checkpoint: String?
    /// Options clients POSTed that Easel has no use for, echoed back by GET.
    private(set) var storedOptions: [String: JSONFragment] = [:]
    private var queued: Set<String> = []
    private var running: [String: Running] = [:]
    private var order: [String] = []
    private(set) var lastPreview: GenerationProgress.Preview?

    init(engine: Engine, scheduler: JobScheduler) {
        self.engine = engine
        self.scheduler = scheduler
    }

    func run() async throws {
        let events = try await scheduler.events(jobID: nil)
        try await cancelWhenGracefulShutdown {
            for await event in events { await self.record(event) }
        }
    }

    private func record(_ event: JobEvent) {
        let job = event.snapshot.job
        switch event.kind {
        case .queued:
            queued.insert(job.id)
        case .started:
            queued.remove(job.id)
            running[job.id] = Running(job: job)
            order.append(job.id)
        case .progress:
            queued.remove(job.id)
            if running[job.id] == nil { order.append(job.id) }
            var run = running[job.id] ?? Running(job: job)
            run.job = job
            run.etaSeconds = event.snapshot.etaSeconds
            if let preview = event.preview {
                run.preview = preview
                lastPreview = preview
            }
            running[job.id] = run
        case .succeeded, .failed, .cancelled:
            queued.remove(job.id)
            running[job.id] = nil
            order.removeAll { $0 == job.id }
            if running.isEmpty { lastPreview = nil }
        }
    }

    /// The job running longest, with queue counts.
    func current() -> (running: Running?, runningCount: Int, queuedCount: Int) {
        (order.first.flatMap { running[$0] }, running.count, queued.count)
    }

    func runningIDs() -> [String] { order }

    func setCheckpoint(_ modelID: String?) { checkpoint = modelID }

    func storeOptions(_ options: [String: JSONFragment]) {
        storedOptions.merge(options) { _, new in new }
    }

    /// The model AUTOMATIC1111 requests run on now.
    func currentModelID() async -> String? {
        if let checkpoint { return checkpoint }
        return await engine.defaultModelID()
    }
}

/// AUTOMATIC1111-style identities of a model: `title` (`file [hash]`), `model_name`,
/// and a short hash. The hash is derived from the model's id and size, not the file's
/// bytes (hashing multi-gigabyte files on every listing would be slow); it is stable
/// while the file is unchanged.
enum CheckpointNames {
    static func sha256(_ entry: ModelEntry) -> String {
        SHA256.hash(data: Data("\(entry.id)\n\(entry.fileName)\n\(entry.sizeBytes)".utf8)).map { String(format: "%02x", $0) }.joined()
    }

    static func hash(_ entry: ModelEntry) -> String { String(sha256(entry).prefix(10)) }

    static func title(_ entry: ModelEntry) -> String { "\(entry.fileName) [\(hash(entry))]" }

    /// The model a client's name refers to: a title, file name, model name or id, with
    /// or without the ` [hash]` suffix, ignoring case.
    static func resolve(_ name: String, in entries: [ModelEntry]) -> ModelEntry? {
        var wanted = name.trimmingCharacters(in: .whitespaces)
        if let bracket = wanted.range(of: " [", options: .backwards), wanted.hasSuffix("]") {
            wanted = String(wanted[..<bracket.lowerBound])
        }
        let lower = wanted.lowercased()
        func stem(_ text: String) -> String {
            let url = URL(fileURLWithPath: text)
            return url.pathExtension.isEmpty ? text.lowercased() : url.deletingPathExtension().lastPathComponent.lowercased()
        }
        return entries.first { $0.id.lowercased() == lower || $0.fileName.lowercased() == lower || title($0).lowercased() == name.lowercased() }
            ?? entries.first { stem($0.fileName) == stem(lower) || $0.id.lowercased() == stem(lower) }
            ?? entries.first { hash($0) == lower || sha256($0) == lower }
    }
}

/// `multipart/form-data` bodies (OpenAI's image edits): parts by name, in order.
struct MultipartForm {
    struct Part {
        let name: String
        let fileName: String?
        let contentType: String?
        let data: Data

        var text: String { String(decoding: data, as: UTF8.self) }
    }

    let parts: [Part]

    func all(_ name: String) -> [Part] { parts.filter { $0.name == name } }
    func first(_ name: String) -> Part? { parts.first { $0.name == name } }

    static func boundary(of contentType: String?) -> String? {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data") else { return nil }
        for parameter in contentType.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == "boundary" {
                return pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
        }
        return nil
    }

    static func parse(_ body: Data, boundary: String) throws -> MultipartForm {
        let bytes = [UInt8](body)
        let delimiter = Array("--\(boundary)".utf8)
        let malformed = EaselError(.invalidJSON, "the multipart/form-data body is malformed")
        var positions: [Int] = []
        var index = 0
        while let found = find(delimiter, in: bytes, from: index) {
            positions.append(found)
            index = found + delimiter.count
        }
        guard positions.count >= 2 else { throw malformed }
        var parts: [Part] = []
        for (start, end) in zip(positions, positions.dropFirst()) {
            var partStart = start + delimiter.count
            // Skip the CRLF after the delimiter.
            if partStart + 1 < bytes.count, bytes[partStart] == 13, bytes[partStart + 1] == 10 { partStart += 2 }
            var partEnd = end
            if partEnd >= 2, bytes[partEnd - 2] == 13, bytes[partEnd - 1] == 10 { partEnd -= 2 }
            guard partStart <= partEnd else { continue }
            let part = Array(bytes[partStart..<partEnd])
            guard let headerEnd = find(Array("\r\n\r\n".utf8), in: part, from: 0) else { throw malformed }
            let headerText = String(decoding: part[..<headerEnd], as: UTF8.self)
            var name: String?
            var fileName: String?
            var contentType: String?
            for line in headerText.components(separatedBy: "\r\n") {
                let lower = line.lowercased()
                if lower.hasPrefix("content-disposition:") {
                    name = parameter("name", in: line)
                    fileName = parameter("filename", in: line)
                } else if lower.hasPrefix("content-type:") {
                    contentType = line.dropFirst("content-type:".count).trimmingCharacters(in: .whitespaces)
                }
            }
            guard let name else { throw malformed }
            parts.append(Part(name: name, fileName: fileName, contentType: contentType, data: Data(part[(headerEnd + 4)...])))
        }
        return MultipartForm(parts: parts)
    }

    private static func parameter(_ key: String, in line: String) -> String? {
        for item in line.split(separator: ";").dropFirst() {
            let pair = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == key {
                return pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
        }
        return nil
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        var index = start
        let last = haystack.count - needle.count
        while index <= last {
            if haystack[index] == needle[0] {
                var match = true
                for offset in 1..<needle.count where haystack[index + offset] != needle[offset] {
                    match = false
                    break
                }
                if match { return index }
            }
            index += 1
        }
        return nil
    }
}
