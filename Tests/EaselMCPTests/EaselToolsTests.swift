@testable import EaselMCP
import Foundation
import MCP
import Testing

@Suite struct EaselToolsTests {
    let client = EaselAPIClient(baseURL: URL(string: "http://127.0.0.1:9")!, apiKey: nil)

    @Test func theFourToolsEachDescribeTheirArguments() throws {
        #expect(EaselTools.tools.map(\.name) == ["generate_image", "list_models", "get_job", "cancel_job"])
        for tool in EaselTools.tools {
            #expect((tool.description ?? "").count > 80, "\(tool.name)")
            let properties = tool.inputSchema.objectValue?["properties"]?.objectValue ?? [:]
            for (name, schema) in properties {
                #expect((schema.objectValue?["description"]?.stringValue ?? "").count > 20, "\(tool.name).\(name)")
            }
        }
    }

    @Test func badArgumentsAreInvalidParams() async throws {
        let cases: [(String, [String: Value], String)] = [
            ("generate_image", ["prompt": "x", "size": "big"], "size"),
            ("generate_image", ["prompt": "x", "size": "512x"], "size"),
            ("generate_image", ["prompt": "x", "steps": "many"], "steps"),
            ("generate_image", ["prompt": "x", "steps": .double(2.5)], "steps"),
            ("generate_image", ["prompt": "x", "cfg_scale": .bool(true)], "cfg_scale"),
            ("generate_image", ["prompt": "   "], "prompt"),
            ("generate_image", ["prompt": "x", "wait_seconds": 0], "wait_seconds"),
            ("generate_image", ["prompt": "x", "colour": "red"], "colour"),
            ("list_models", ["verbose": true], "verbose"),
            ("get_job", [:], "job_id"),
            ("get_job", ["job_id": 5], "job_id"),
            ("cancel_job", ["job_id": ""], "job_id"),
            ("draw", [:], "draw"),
        ]
        for (tool, arguments, expected) in cases {
            do {
                _ = try await EaselTools.call(tool, arguments: arguments, client: client)
                Issue.record("\(tool) \(arguments) did not fail")
            } catch let error as MCPError {
                #expect(error.code == -32602, "\(tool) \(arguments)")
                #expect("\(error.errorDescription ?? "")".contains(expected), "\(tool) \(arguments): \(error)")
            }
        }
    }

    @Test func anUnreachableServerIsAToolError() async throws {
        let result = try await EaselTools.call("list_models", arguments: [:], client: client)
        #expect(result.isError == true)
    }

    @Test func urlsKeepTheBasePath() {
        let proxied = EaselAPIClient(baseURL: URL(string: "https://example.com/easel/")!, apiKey: "k1")
        #expect(proxied.url("/v1/jobs").absoluteString == "https://example.com/easel/v1/jobs")
        #expect(proxied.authorization == "Bearer k1")
        #expect(EaselAPIClient(baseURL: URL(string: "http://h")!, apiKey: "Basic dTpw").authorization == "Basic dTpw")
        #expect(EaselAPIClient(baseURL: URL(string: "http://h")!, apiKey: " ").authorization == nil)
    }
}
