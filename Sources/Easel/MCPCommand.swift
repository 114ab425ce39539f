import ArgumentParser
import EaselCore
import EaselMCP
import Foundation
import Logging

/// `easel mcp`: an MCP server over stdio for LLM clients, calling a running Easel.
struct MCPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serve Easel's tools (generate_image, list_models, get_job, cancel_job) over MCP on stdin/stdout.",
        discussion: """
            Starts no server of its own: it calls a running `easel serve` at --url. Add it to an MCP \
            client as the command `easel mcp --url http://127.0.0.1:7860`. The environment can set \
            EASEL_URL and EASEL_API_KEY instead of the options. Logs go to stderr.
            """
    )

    @Option(help: "Base URL of the running Easel server (default: $EASEL_URL or http://127.0.0.1:7860).")
    var url: String?

    @Option(help: "API key sent as a Bearer token, or a whole Authorization value such as 'Basic …' (default: $EASEL_API_KEY).")
    var apiKey: String?

    @Option(help: "Log level on stderr: trace, debug, info, notice, warning, error or critical.")
    var logLevel = "warning"

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let text = url ?? environment["EASEL_URL"] ?? "http://127.0.0.1:7860"
        guard let baseURL = URL(string: text), let scheme = baseURL.scheme, ["http", "https"].contains(scheme), baseURL.host != nil else {
            throw ValidationError("--url must be an http(s) URL such as http://127.0.0.1:7860, not '\(text)'")
        }
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "easel.mcp")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .warning
        let client = EaselAPIClient(baseURL: baseURL, apiKey: apiKey ?? environment["EASEL_API_KEY"])
        try await StdioMCPServer.run(client: client, version: EaselVersion.current, logger: logger)
    }
}
