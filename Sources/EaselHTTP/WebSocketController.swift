import EaselCore
import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// `GET /v1/ws`: job events over a WebSocket.
///
/// A client that connects without a query follows every job. `?job=<id>` (repeatable, or
/// comma-separated) follows only those jobs. The subscription is in place when the
/// handshake completes, so no event after it is missed. Each event is one text message
/// holding the same JSON as the `data` of `GET /v1/jobs/{id}/events` (SSE).
///
/// A client changes what it follows with text messages:
/// - `{"subscribe": ["job_…", …]}` follows those jobs (from then on only the jobs it names,
///   not every job). Each job's current state comes first, as an SSE client that connects
///   late gets it; a job already followed is started over. A finished job sends its final
///   state and nothing more. `"*"` in the list goes back to following every job.
/// - `{"unsubscribe": ["job_…", …]}` stops following those jobs; `"*"` stops everything.
///
/// A message the server cannot use is answered with `{"error": {"code", "message"}}`
/// (`invalid_json`, `invalid_field`, `unknown_field`, `job_not_found`), and the socket
/// stays open. A client that reads too slowly loses its oldest unsent events, as SSE does.
struct WebSocketController {
    let scheduler: JobScheduler

    /// Most jobs one connection may follow by id.
    static let maxJobs = 1000
    /// Largest message a client may send.
    static let maxMessageBytes = 64 * 1024

    /// The upgrade route, on the router that `http1WebSocketUpgrade` consults.
    func addRoutes(to router: Router<EaselWebSocketContext>) {
        router.ws("/v1/ws", shouldUpgrade: shouldUpgrade, onUpgrade: handle)
    }

    /// A plain (not upgrading) request for `/v1/ws` on the HTTP router learns what to do.
    func addHTTPRoutes(to router: Router<EaselRequestContext>) {
        router.get("/v1/ws") { _, _ -> Response in
            throw EaselError(.upgradeRequired, "/v1/ws is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)")
        }
    }

    /// Opens the first subscriptions before the handshake completes.
    @Sendable func shouldUpgrade(_ request: Request, context: EaselWebSocketContext) async throws -> RouterShouldUpgrade {
        let ids = request.uri.queryParameters[values: "job"]
            .flatMap { $0.split(separator: ",") }
            .map { String($0).trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        var opening = OpeningSubscriptions()
        if ids.isEmpty {
            opening.all = try await scheduler.events(jobID: nil)
        } else {
            for id in ids.prefix(Self.maxJobs) {
                do {
                    opening.jobs.append((id, .success(try await scheduler.events(jobID: id))))
                } catch {
                    opening.jobs.append((id, .failure(error)))
                }
            }
        }
        context.opening.set(opening)
        return .upgrade([:])
    }

    @Sendable func handle(
        _ inbound: WebSocketInboundStream, _ outbound: WebSocketOutboundWriter,
        _ context: WebSocketRouterContext<EaselWebSocketContext>
    ) async throws {
        // One writer keeps messages whole and in order.
        let (messages, sink) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(512))
        var subscriptions = Subscriptions(scheduler: scheduler, sink: sink)
        defer {
            subscriptions.stopAll()
            sink.finish()
        }
        let opening = context.requestContext.opening.take()
        if let all = opening.all { subscriptions.followAll(all) }
        for (id, result) in opening.jobs {
            switch result {
            case .success(let stream): subscriptions.follow(id, stream)
            case .failure(let error): subscriptions.send(error: error)
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await message in messages {
                    try await outbound.writeTextMessage(message)
                }
            }
            for try await message in inbound.messages(maxSize: Self.maxMessageBytes) {
                await subscriptions.handle(message)
            }
            group.cancelAll()
        }
    }
}

/// The context of upgrade requests: what the WebSocket router needs, plus the streams
/// opened before the handshake completes.
struct EaselWebSocketContext: RequestContext, WebSocketRequestContext {
    var coreContext: CoreRequestContextStorage
    let webSocket: WebSocketHandlerReference<Self>
    let opening: OpeningBox

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        opening = OpeningBox()
    }
}

/// Event streams opened for a connection before its handler runs.
struct OpeningSubscriptions: @unchecked Sendable {
    var all: AsyncStream<JobEvent>?
    var jobs: [(String, Result<AsyncStream<JobEvent>, Error>)] = []
}

/// Hands the opening streams from `shouldUpgrade` to the handler. The handler takes them
/// out, so nothing here outlives the handshake.
final class OpeningBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value = OpeningSubscriptions()

    func set(_ opening: OpeningSubscriptions) {
        lock.withLock { value = opening }
    }

    func take() -> OpeningSubscriptions {
        lock.withLock {
            defer { value = OpeningSubscriptions() }
            return value
        }
    }
}

/// What one connection follows. Only the connection's handler touches it; the tasks it
/// starts only feed the connection's outgoing messages.
struct Subscriptions {
    let scheduler: JobScheduler
    let sink: AsyncStream<String>.Continuation
    private var all: Task<Void, Never>?
    private var jobs: [String: Task<Void, Never>] = [:]

    init(scheduler: JobScheduler, sink: AsyncStream<String>.Continuation) {
        self.scheduler = scheduler
        self.sink = sink
    }

    /// A control message: `{"subscribe": [...]}` and/or `{"unsubscribe": [...]}`.
    private struct Control: Decodable {
        enum Value: Decodable {
            case ids([String])
            case invalid

            init(from decoder: Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let ids = try? container.decode([String].self) {
                    self = .ids(ids)
                } else if let id = try? container.decode(String.self) {
                    self = .ids([id])
                } else {
                    self = .invalid
                }
            }
        }
    }

    mutating func handle(_ message: WebSocketMessage) async {
        guard case .text(let text) = message else {
            return send(error: EaselError(.invalidJSON, "send text messages holding JSON, like {\"subscribe\": [\"job_…\"]}"))
        }
        let fields: [String: Control.Value]
        do {
            fields = try JSONDecoder().decode([String: Control.Value].self, from: Data(text.utf8))
        } catch {
            return send(error: EaselError(
                .invalidJSON, "a message must be a JSON object like {\"subscribe\": [\"job_…\"]} or {\"unsubscribe\": [\"job_…\"]}"
            ))
        }
        if let unknown = fields.keys.sorted().first(where: { $0 != "subscribe" && $0 != "unsubscribe" }) {
            return send(error: EaselError(.unknownField, "unknown field '\(unknown)'; messages take subscribe and unsubscribe", field: unknown))
        }
        guard !fields.isEmpty else {
            return send(error: EaselError(.invalidJSON, "the message names neither subscribe nor unsubscribe"))
        }
        var lists: [String: [String]] = [:]
        for (name, value) in fields {
            guard case .ids(let ids) = value else {
                return send(error: EaselError.invalid(name, "must be a list of job ids"))
            }
            lists[name] = ids
        }
        if let ids = lists["unsubscribe"] { unsubscribe(ids) }
        if let ids = lists["subscribe"] { await subscribe(ids) }
    }

    mutating func subscribe(_ ids: [String]) async {
        if ids.contains("*") {
            stopAll()
            do {
                followAll(try await scheduler.events(jobID: nil))
            } catch {
                send(error: error)
            }
            return
        }
        all?.cancel()
        all = nil
        for id in ids {
            guard jobs[id] != nil || jobs.count < WebSocketController.maxJobs else {
                return send(error: EaselError.invalid("subscribe", "a connection may follow at most \(WebSocketController.maxJobs) jobs"))
            }
            jobs[id]?.cancel()
            jobs[id] = nil
            do {
                // The job's current state goes out before anything this message causes next
                // (an error about a later id, say), so clients see replies in order.
                let stream = try await scheduler.events(jobID: id)
                await withCheckedContinuation { (delivered: CheckedContinuation<Void, Never>) in
                    jobs[id] = forward(stream) { delivered.resume() }
                }
            } catch {
                send(error: error)
            }
        }
    }

    mutating func unsubscribe(_ ids: [String]) {
        if ids.contains("*") { return stopAll() }
        for id in ids {
            jobs.removeValue(forKey: id)?.cancel()
        }
    }

    mutating func followAll(_ stream: AsyncStream<JobEvent>) {
        all = forward(stream)
    }

    mutating func stopAll() {
        all?.cancel()
        all = nil
        for task in jobs.values { task.cancel() }
        jobs = [:]
    }

    mutating func follow(_ id: String, _ stream: AsyncStream<JobEvent>) {
        jobs[id] = forward(stream)
    }

    /// Sends the stream's events; `afterFirst` runs once the first is sent (or the stream ends).
    private func forward(_ stream: AsyncStream<JobEvent>, afterFirst: (@Sendable () -> Void)? = nil) -> Task<Void, Never> {
        let sink = sink
        return Task {
            var announced = false
            for await event in stream {
                // Once unsubscribed, nothing more: a subscription that replaces this one
                // sends its own first state.
                if Task.isCancelled { break }
                sink.yield(JSONResponse.encode(JobEventDocument(event)))
                if !announced {
                    announced = true
                    afterFirst?()
                }
            }
            if !announced { afterFirst?() }
        }
    }

    func send(error: Error) {
        let error = error as? EaselError ?? EaselError(.internalError, "\(error)")
        sink.yield(JSONResponse.encode(ErrorBody(error: .init(code: error.code.rawValue, message: error.message, field: error.field))))
    }
}
