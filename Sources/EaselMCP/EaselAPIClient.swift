import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A small client of Easel's native HTTP API, used by the MCP tools. `easel mcp` points it
/// at a running server; `/mcp` points it at the server it runs in (over loopback), with
/// the caller's `Authorization` header, so both go through the same checks as any client.
public struct EaselAPIClient: Sendable {
    public let baseURL: URL
    /// The whole `Authorization` header value, e.g. `Bearer <key>`.
    public let authorization: String?
    /// Where the caller reaches the server, for the image URLs the tools hand out.
    public let publicBaseURL: URL

    public init(baseURL: URL, authorization: String?, publicBaseURL: URL? = nil) {
        self.baseURL = baseURL
        self.authorization = authorization
        self.publicBaseURL = publicBaseURL ?? baseURL
    }

    /// A key given on its own becomes a Bearer header; a value that already names a
    /// scheme (`Bearer …`, `Basic …`) is kept as it is.
    public init(baseURL: URL, apiKey: String?) {
        let key = apiKey?.trimmingCharacters(in: .whitespaces)
        let authorization: String?
        if let key, !key.isEmpty {
            authorization = key.lowercased().hasPrefix("bearer ") || key.lowercased().hasPrefix("basic ") ? key : "Bearer \(key)"
        } else {
            authorization = nil
        }
        self.init(baseURL: baseURL, authorization: authorization)
    }

    /// An answer of the API that was not a success.
    public struct APIError: Error, CustomStringConvertible, Sendable {
        public let status: Int
        public let code: String
        public let message: String
        public let field: String?

        public var description: String {
            var text = "Easel answered \(status) \(code): \(message)"
            if let field { text += " (field: \(field))" }
            return text
        }

        /// A request the caller can fix (a bad field), as opposed to the server failing.
        public var isInvalidRequest: Bool { [400, 404, 413, 422].contains(status) }
    }

    /// The server could not be reached at all.
    public struct ConnectionError: Error, CustomStringConvertible, Sendable {
        public let url: String
        public let reason: String
        public var description: String { "cannot reach Easel at \(url): \(reason)" }
    }

    public func url(_ path: String) -> URL { Self.join(baseURL, path) }

    public func publicURL(_ path: String) -> URL { Self.join(publicBaseURL, path) }

    /// `path` under the base URL, keeping a base path (Easel behind a proxy at `/easel/`).
    static func join(_ base: URL, _ path: String) -> URL {
        var text = base.absoluteString
        while text.hasSuffix("/") { text.removeLast() }
        return URL(string: text + (path.hasPrefix("/") ? path : "/" + path)) ?? base
    }

    /// Sends a request; answers the body of a 2xx response, throws ``APIError`` otherwise.
    public func send(_ method: String, _ path: String, json: [String: Any]? = nil, timeout: TimeInterval = 60) async throws -> Data {
        var request = URLRequest(url: url(path), timeoutInterval: timeout)
        request.httpMethod = method
        if let authorization { request.setValue(authorization, forHTTPHeaderField: "Authorization") }
        if let json {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw ConnectionError(url: url(path).absoluteString, reason: "\(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            let detail = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["error"] as? [String: Any]
            throw APIError(
                status: status, code: detail?["code"] as? String ?? "http_\(status)",
                message: detail?["message"] as? String ?? String(decoding: data.prefix(500), as: UTF8.self),
                field: detail?["field"] as? String
            )
        }
        return data
    }

    public func json(_ method: String, _ path: String, body: [String: Any]? = nil) async throws -> [String: Any] {
        let data = try await send(method, path, json: body)
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw APIError(status: 502, code: "bad_response", message: "\(path) did not answer a JSON object", field: nil)
        }
        return object
    }

    public func listModels() async throws -> [String: Any] { try await json("GET", "/v1/models") }

    public func submitJob(_ body: [String: Any]) async throws -> [String: Any] { try await json("POST", "/v1/jobs", body: body) }

    public func job(_ id: String) async throws -> [String: Any] { try await json("GET", "/v1/jobs/\(Self.escape(id))") }

    public func cancelJob(_ id: String) async throws -> [String: Any] { try await json("POST", "/v1/jobs/\(Self.escape(id))/cancel") }

    public func image(_ path: String) async throws -> Data { try await send("GET", path, timeout: 120) }

    /// Polls the job until it ends or `timeout` passes; answers its last document.
    public func waitForJob(_ id: String, timeout: TimeInterval) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        var pause: UInt64 = 100_000_000
        while true {
            let document = try await job(id)
            let state = document["state"] as? String ?? ""
            if ["succeeded", "failed", "cancelled"].contains(state) || Date() >= deadline { return document }
            try await Task.sleep(nanoseconds: pause)
            pause = min(pause * 2, 1_000_000_000)
        }
    }

    static func escape(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? id
    }
}
