import Crypto
import EaselCore
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// The API keys a server accepts, kept only as SHA-256 hashes.
struct APIKeys: Sendable {
    private let hashes: [[UInt8]]

    init(_ keys: [String]) {
        hashes = keys.map { Array(SHA256.hash(data: Data($0.utf8))) }
    }

    /// The keys of `--api-key` and of the lines of `--api-key-file` (blank lines and
    /// lines starting with `#` skipped).
    static func load(_ settings: Settings) throws -> APIKeys {
        var keys = settings.apiKey.filter { !$0.isEmpty }
        if let path = settings.apiKeyFile {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw EaselError(.internalError, "cannot read --api-key-file \(path): \(error.localizedDescription)")
            }
            keys += text.split(whereSeparator: \.isNewline)
                .map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        }
        return APIKeys(keys)
    }

    var isEmpty: Bool { hashes.isEmpty }
    var count: Int { hashes.count }

    /// The id of the key `presented` is (`key_` and the start of its hash, safe to log),
    /// or nil. Every stored hash is compared, each in constant time, so the time taken
    /// tells nothing about which key, or how much of one, matched.
    func match(_ presented: String) -> String? {
        let digest = Array(SHA256.hash(data: Data(presented.utf8)))
        var found: Int?
        for (index, hash) in hashes.enumerated() {
            var difference: UInt8 = 0
            for (a, b) in zip(hash, digest) { difference |= a ^ b }
            if difference == 0, found == nil { found = index }
        }
        guard let found else { return nil }
        return "key_" + hashes[found].prefix(4).map { String(format: "%02x", $0) }.joined()
    }

    /// The key in an `Authorization` header: a Bearer token, or the password (or, when
    /// the password is empty, the user name) of HTTP Basic.
    static func credentials(in authorization: String?) -> [String] {
        guard let authorization else { return [] }
        let parts = authorization.split(separator: " ", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return [] }
        let value = parts[1].trimmingCharacters(in: .whitespaces)
        switch parts[0].lowercased() {
        case "bearer":
            return [value]
        case "basic":
            guard let data = Data(base64Encoded: value), let text = String(data: data, encoding: .utf8),
                let colon = text.firstIndex(of: ":")
            else { return [] }
            let user = String(text[..<colon]), password = String(text[text.index(after: colon)...])
            return password.isEmpty ? [user] : [password]
        default:
            return []
        }
    }
}

/// Token buckets, one per client: `perMinute` requests a minute on average, up to
/// `burst` at once.
final class RateLimiter: @unchecked Sendable {
    private struct Bucket {
        var tokens: Double
        var at: ContinuousClock.Instant
    }

    let perMinute: Double
    let burst: Double
    private let lock = NSLock()
    private var buckets: [String: Bucket] = [:]

    init(perMinute: Double, burst: Int) {
        self.perMinute = perMinute
        self.burst = Double(burst)
    }

    /// Takes a token for `client`; nil when allowed, else the seconds until the next token.
    func take(_ client: String, now: ContinuousClock.Instant = .now) -> Double? {
        let perSecond = perMinute / 60
        return lock.withLock {
            if buckets.count > 10_000 {
                // Forget clients whose buckets have filled up again.
                buckets = buckets.filter { Self.seconds(now - $0.value.at) * perSecond + $0.value.tokens < burst }
            }
            var bucket = buckets[client] ?? Bucket(tokens: burst, at: now)
            bucket.tokens = min(burst, bucket.tokens + Self.seconds(now - bucket.at) * perSecond)
            bucket.at = now
            defer { buckets[client] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return (1 - bucket.tokens) / perSecond
        }
    }

    private static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// Who may call, and how often: checks the API key when keys are set (every route but
/// `/health`, and `/metrics` when `--no-metrics-require-key`), applies the per-client
/// rate limit, and binds ``RequestClient/id`` (the key's id, or the client's address)
/// for the per-client queue share.
struct AccessMiddleware<Context: RequestContext>: RouterMiddleware {
    let keys: APIKeys
    let openPaths: Set<String>
    let limiter: RateLimiter?
    /// The client's address, where the context knows it.
    let address: @Sendable (Context) -> String?

    init(keys: APIKeys, settings: Settings, address: @escaping @Sendable (Context) -> String?) {
        self.keys = keys
        self.openPaths = settings.metricsRequireKey ? ["/health"] : ["/health", "/metrics"]
        self.limiter = settings.rateLimit > 0 ? RateLimiter(perMinute: settings.rateLimit, burst: settings.rateLimitBurst) : nil
        self.address = address
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if path == "/health" { return try await next(request, context) }
        var context = context
        var client = address(context)
        if !keys.isEmpty, !openPaths.contains(path) {
            let presented = APIKeys.credentials(in: request.headers[.authorization])
            guard let id = presented.lazy.compactMap(keys.match).first else {
                throw EaselError(
                    .unauthorized,
                    presented.isEmpty
                        ? "this server needs an API key: send Authorization: Bearer <key>, or HTTP Basic with the key as the password"
                        : "the API key is not valid"
                )
            }
            client = id
            context.logger[metadataKey: "api_key"] = .string(id)
        }
        if let limiter, let wait = limiter.take(client ?? "unknown") {
            let seconds = Int(wait.rounded(.up))
            context.logger.notice("rate limited", metadata: ["client": .string(client ?? "unknown")])
            var response = try EaselError(
                .rateLimited,
                "more than \(Self.number(limiter.perMinute)) requests a minute (--rate-limit); retry in \(seconds) s"
            ).response(from: request, context: context)
            response.headers[.retryAfter] = String(max(1, seconds))
            return response
        }
        return try await RequestClient.$id.withValue(client) {
            try await next(request, context)
        }
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}

extension EaselRequestContext {
    /// The client's IP address, for rate limits and queue shares without API keys.
    var clientAddress: String? { channel.remoteAddress?.ipAddress }
}
