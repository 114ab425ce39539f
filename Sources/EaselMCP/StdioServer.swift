import Foundation
import Logging
import MCP

/// `easel mcp`: Easel's tools over MCP's stdio transport, for clients that start the
/// server as a child process (Claude Desktop, editors, agents). It calls a running Easel
/// over HTTP; stdout carries only MCP messages, logs go to stderr.
public enum StdioMCPServer {
    public static func run(client: EaselAPIClient, version: String, logger: Logger) async throws {
        let server = await EaselTools.makeServer(client: client, version: version)
        let transport = StdioTransport(logger: logger)
        try await server.start(transport: transport)
        logger.info("MCP over stdio, calling Easel at \(client.baseURL.absoluteString)")
        await server.waitUntilCompleted()
    }
}
