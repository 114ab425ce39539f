import Crypto
import EaselCore
import Foundation
import Logging
import ServiceLifecycle

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Tells a job's `webhook` URL that the job reached a final state.
///
/// **Delivery.** When a job that carries a `webhook` succeeds, fails or is cancelled, the
/// server sends `POST <webhook>` whose body is the job as `GET /v1/jobs/{id}` shows it
/// (JSON), with these headers:
///
/// - `Content-Type: application/json`
/// - `X-Easel-Event: job.succeeded`, `job.failed` or `job.cancelled`
/// - `X-Easel-Timestamp: <t>`: when this attempt was sent, in Unix seconds (an integer)
/// - `X-Easel-Signature: sha256=<hex>`
///
/// **Signature.** `<hex>` is the lowercase hexadecimal HMAC-SHA256 of the bytes
/// `<t>.<body>`: the `X-Easel-Timestamp` value as decimal ASCII, one `.`, then the request
/// body exactly as received. The key is the UTF-8 bytes of the server's webhook secret,
/// as given (`--webhook-secret`, `EASEL_WEBHOOK_SECRET`, the `webhook_secret` config key),
/// or else the 64 hexadecimal characters of `<data-dir>/webhook-secret`, which the server
/// generates once (32 random bytes, file mode 0600) and reuses after restarts. A receiver
/// recomputes the HMAC over the raw body, compares it in constant time, and rejects
/// timestamps far from its own clock to stop replays. In Python:
///
///     expected = "sha256=" + hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
///     ok = hmac.compare_digest(expected, request.headers["X-Easel-Signature"])
///
/// **Retries.** A connection error, a timeout (15 s) or any status other than 2xx is
/// retried after 1 s, 2 s, 4 s, … (at most 60 s between attempts), up to
/// `--webhook-attempts` attempts in all. Each attempt carries the same body with a fresh
/// timestamp and signature. Redirects are not followed: a 3xx counts as a failure.
///
/// **Outcome.** The job's `webhook.status` tells how delivery went: absent before the
/// first attempt, `retrying: …` between attempts, then `delivered (attempt 2, HTTP 200)`
/// or `failed after 5 attempts: HTTP 500`. Deliveries run concurrently, so one slow
/// endpoint holds up no other. At shutdown, deliveries still under way get up to 10 s
/// (`--shutdown-grace` if less) to finish, then end as `failed: the server stopped …`;
/// they are not resumed after a restart.
struct WebhookNotifier: Service {
    let scheduler: JobScheduler
    let secret: String
    let attempts: Int
    /// How long deliveries still under way may continue once shutdown begins.
    let shutdownGrace: Duration
    let logger: Logger
    let requestTimeout: TimeInterval = 15
    private let session: URLSession

    init(scheduler: JobScheduler, secret: String, attempts: Int, shutdownGrace: Duration, logger: Logger) {
        self.scheduler = scheduler
        self.secret = secret
        self.attempts = max(1, attempts)
        self.shutdownGrace = shutdownGrace
        self.logger = logger
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = requestTimeout
        configuration.httpShouldSetCookies = false
        configuration.urlCache = nil
        // The session's delegate, since FoundationNetworking ignores a per-task one.
        session = URLSession(configuration: configuration, delegate: NoRedirects.shared, delegateQueue: nil)
    }

    func run() async throws {
        let events = try await scheduler.events(jobID: nil)
        let inFlight = InFlight()
        // A child that throws cancels the group: the shutdown deadline uses that.
        try? await withThrowingDiscardingTaskGroup { group in
            for await event in events.cancelOnGracefulShutdown() {
                guard event.isFinal, let webhook = event.snapshot.job.webhook else { continue }
                let job = event.snapshot.job
                let body = JSONResponse.data(JobDocument(event.snapshot))
                await inFlight.add()
                group.addTask {
                    await deliver(jobID: job.id, to: webhook, event: "job.\(event.kind.rawValue)", body: body)
                    await inFlight.remove()
                }
            }
            let pending = await inFlight.count
            guard pending > 0 else { return }
            logger.notice("waiting up to \(shutdownGrace) for \(pending) webhook deliveries")
            let deadline = ContinuousClock.now + shutdownGrace
            group.addTask {
                while await inFlight.count > 0 {
                    guard ContinuousClock.now < deadline else { throw CancellationError() }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        }
    }

    /// Sends one job's notification, retrying as the type's documentation says, and
    /// records the outcome on the job. Never throws: a failure is only recorded.
    func deliver(jobID: String, to webhook: String, event: String, body: Data) async {
        guard let url = URL(string: webhook), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            url.host != nil
        else {
            await record(jobID, "failed: '\(webhook)' is not an absolute http or https URL")
            return
        }
        var problem = "not attempted"
        for attempt in 1...attempts {
            if attempt > 1 {
                let delay = Self.backoff(beforeAttempt: attempt)
                await record(jobID, "retrying: attempt \(attempt - 1) failed (\(problem)); attempt \(attempt) in \(delay) s")
                do {
                    try await Task.sleep(for: .seconds(delay))
                } catch {
                    await record(jobID, "failed: the server stopped after \(Self.attemptCount(attempt - 1)): \(problem)")
                    return
                }
            }
            let request = makeRequest(url: url, event: event, body: body, timestamp: Int(Date().timeIntervalSince1970))
            do {
                let (_, response) = try await session.data(for: request)
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                if (200..<300).contains(status) {
                    logger.info("webhook delivered", metadata: ["job": "\(jobID)", "attempt": "\(attempt)", "status": "\(status)"])
                    await record(jobID, "delivered (attempt \(attempt), HTTP \(status))")
                    return
                }
                problem = "HTTP \(status)"
            } catch {
                if Task.isCancelled {
                    await record(jobID, "failed: the server stopped during attempt \(attempt)")
                    return
                }
                problem = Self.describe(error)
            }
            logger.debug("webhook attempt failed", metadata: ["job": "\(jobID)", "attempt": "\(attempt)", "problem": "\(problem)"])
        }
        logger.warning("webhook failed", metadata: ["job": "\(jobID)", "url": "\(webhook)", "problem": "\(problem)"])
        await record(jobID, "failed after \(Self.attemptCount(attempts)): \(problem)")
    }

    func makeRequest(url: URL, event: String, body: Data, timestamp: Int) -> URLRequest {
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: requestTimeout)
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("Easel/\(EaselVersion.current)", forHTTPHeaderField: "User-Agent")
        request.setValue(event, forHTTPHeaderField: "X-Easel-Event")
        request.setValue(String(timestamp), forHTTPHeaderField: "X-Easel-Timestamp")
        request.setValue(Self.signature(secret: secret, timestamp: timestamp, body: body), forHTTPHeaderField: "X-Easel-Signature")
        return request
    }

    private func record(_ jobID: String, _ status: String) async {
        // In a task of its own: the store declines work from a cancelled task, and the
        // outcome of a delivery cut short by shutdown is still worth keeping.
        let scheduler = scheduler
        await Task { await scheduler.recordWebhookStatus(id: jobID, status: status) }.value
    }

    /// `sha256=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with the secret's UTF-8 bytes.
    static func signature(secret: String, timestamp: Int, body: Data) -> String {
        var message = Data("\(timestamp).".utf8)
        message.append(body)
        let code = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Data(secret.utf8)))
        return "sha256=" + hex(Array(code))
    }

    /// Seconds to wait before `attempt` (2 or more): 1, 2, 4, … capped at 60.
    static func backoff(beforeAttempt attempt: Int) -> Int {
        attempt - 2 >= 6 ? 60 : min(60, 1 << (attempt - 2))
    }

    static func attemptCount(_ count: Int) -> String {
        count == 1 ? "1 attempt" : "\(count) attempts"
    }

    static func describe(_ error: Error) -> String {
        guard let error = error as? URLError else { return "\(error)" }
        switch error.code {
        case .timedOut: return "timed out"
        case .cannotConnectToHost: return "connection refused"
        case .cannotFindHost, .dnsLookupFailed: return "unknown host"
        case .networkConnectionLost: return "connection lost"
        case .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate,
            .serverCertificateNotYetValid, .serverCertificateHasUnknownRoot:
            return "TLS failure"
        case .badServerResponse: return "bad server response"
        case .badURL, .unsupportedURL: return "unsupported URL"
        default: return "network error \(error.code.rawValue)"
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: - The secret

    /// The signing secret: `settings.webhookSecret` when set, else the one kept in
    /// `<data-dir>/webhook-secret`, created (32 random bytes as hex, mode 0600) when missing.
    static func secret(settings: Settings) throws -> String {
        if let secret = settings.webhookSecret, !secret.isEmpty { return secret }
        let folder = settings.dataURL
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent("webhook-secret").path
        if FileManager.default.fileExists(atPath: path) {
            let stored = String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            if !stored.isEmpty { return stored }
        }
        var generator = SystemRandomNumberGenerator()
        let secret = hex((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        try writePrivately(secret + "\n", to: path)
        return secret
    }

    /// Writes `text` to a file that only its owner can read.
    private static func writePrivately(_ text: String, to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else {
            throw EaselError(.internalError, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        fchmod(descriptor, 0o600)
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else {
                throw EaselError(.internalError, "cannot write \(path): \(String(cString: strerror(errno)))")
            }
            written += count
        }
    }
}

/// Counts deliveries under way, so shutdown knows when they are done.
private actor InFlight {
    private(set) var count = 0
    func add() { count += 1 }
    func remove() { count -= 1 }
}

/// Declines every redirect: the 3xx itself becomes the answer.
private final class NoRedirects: NSObject, URLSessionTaskDelegate, Sendable {
    static let shared = NoRedirects()

    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
        newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void
    ) {
        completionHandler(nil)
    }
}
