import EaselCore
import EaselMCP
import Foundation
import HTTPTypes
import Hummingbird
import MCP
import NIOCore

/// `/mcp`: Easel's MCP tools over the streamable HTTP transport, stateless: each POST
/// carries one JSON-RPC message and gets its JSON answer (no sessions, no SSE; GET and
/// DELETE answer 405, which clients take as "no server stream"). Each request gets its
/// own MCP server, whose tools call this server's HTTP API over loopback with the
/// caller's `Authorization` header, so API keys apply to MCP as to any other client.
struct MCPController {
    let settings: Settings

    typealias Context = EaselRequestContext

    func addRoutes(to router: Router<Context>) {
        router.post("/mcp", use: handle)
        router.get("/mcp", use: handle)
        router.delete("/mcp", use: handle)
    }

    /// This server's own address, as the tools reach it.
    var loopbackURL: URL {
        var host = settings.host
        if ["", "0.0.0.0", "::", "[::]", "*"].contains(host) { host = "127.0.0.1" }
        if host.contains(":"), !host.hasPrefix("[") { host = "[\(host)]" }
        return URL(string: "http://\(host):\(settings.port)")!
    }

    var isLoopbackOnly: Bool { ["127.0.0.1", "localhost", "::1", "[::1]"].contains(settings.host) }

    @Sendable func handle(_ request: Request, context: Context) async throws -> Response {
        let body = try await request.body.collect(upTo: settings.maxBodyBytes)
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        if let authority = request.head.authority, headers["host"] == nil { headers["host"] = authority }
        let mcpRequest = MCP.HTTPRequest(
            method: request.method.rawValue, headers: headers,
            body: body.readableBytes > 0 ? Data(buffer: body) : nil, path: request.uri.path
        )

        let client = EaselAPIClient(
            baseURL: loopbackURL, authorization: request.headers[.authorization],
            publicBaseURL: request.head.authority.flatMap { URL(string: "http://\($0)") }
        )
        // A server bound to loopback keeps the SDK's DNS-rebinding guard (Origin must be
        // local); one that listens on the network accepts other origins, as the rest of the API does.
        let transport = StatelessHTTPServerTransport(
            validationPipeline: StandardValidationPipeline(validators: [
                isLoopbackOnly ? OriginValidator.localhost() : OriginValidator.disabled,
                AcceptHeaderValidator(mode: .jsonOnly),
                ContentTypeValidator(),
                ProtocolVersionValidator(),
            ])
        )
        let server = await EaselTools.makeServer(client: client, version: EaselVersion.current)
        try await server.start(transport: transport)
        let answer = await transport.handleRequest(mcpRequest)
        return Self.response(answer, onFinish: { await server.stop() })
    }

    static func response(_ answer: MCP.HTTPResponse, onFinish: @escaping @Sendable () async -> Void) -> Response {
        var fields = HTTPFields()
        for (name, value) in answer.headers {
            if let name = HTTPField.Name(name) { fields[name] = value }
        }
        let status = HTTPTypes.HTTPResponse.Status(code: answer.statusCode)
        if case .stream(let stream, _) = answer {
            return Response(
                status: status, headers: fields,
                body: ResponseBody { writer in
                    defer { Task { await onFinish() } }
                    for try await chunk in stream { try await writer.write(ByteBuffer(bytes: chunk)) }
                    try await writer.finish(nil)
                }
            )
        }
        Task { await onFinish() }
        if fields[.contentType] == nil, answer.bodyData == nil, status.code >= 400 {
            fields[.contentType] = "application/json"
        }
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.bodyData ?? Data())))
    }
}
