import Foundation
import MCP

/// Easel's MCP tools: `generate_image`, `list_models`, `get_job`, `cancel_job`. Each call
/// goes to Easel's HTTP API through an ``EaselAPIClient``, so stdio (`easel mcp`) and
/// streamable HTTP (`/mcp`) behave the same.
public enum EaselTools {
    public static let serverName = "easel"

    public static let instructions = """
        Easel generates images with Stable Diffusion models on this machine. Call generate_image \
        with a prompt to get a picture back; list_models shows which models exist. Images take \
        from a second to minutes depending on size, steps and hardware; keep width and height \
        multiples of 8 and start small (512x512 for SD 1.x, 1024x1024 for SDXL models).
        """

    /// A fresh MCP server with Easel's tools, calling the API through `client`.
    public static func makeServer(client: EaselAPIClient, version: String) async -> Server {
        let server = Server(
            name: serverName, version: version, title: "Easel image generation", instructions: instructions,
            capabilities: .init(tools: .init(listChanged: false))
        )
        await server.withMethodHandler(ListTools.self) { _ in .init(tools: tools) }
        await server.withMethodHandler(CallTool.self) { params in
            try await call(params.name, arguments: params.arguments ?? [:], client: client)
        }
        return server
    }

    // MARK: - Tool definitions

    static let jobIDSchema: Value = .object([
        "type": "string",
        "description": "The job id, as returned by generate_image (`job_id`), e.g. \"job_3f1c…\".",
    ])

    public static let tools: [Tool] = [
        Tool(
            name: "generate_image",
            title: "Generate an image",
            description: """
                Generates an image from a text prompt with Stable Diffusion and returns it as an image \
                (PNG), together with its URL on the Easel server, its seed and the job id. The call \
                waits until the image is ready (seconds to a few minutes). Reuse the returned seed with \
                the same prompt and settings to reproduce or slightly vary an image. Every parameter \
                except prompt is optional; leave it out to use the server's default.
                """,
            inputSchema: .object([
                "type": "object",
                "properties": .object([
                    "prompt": .object([
                        "type": "string",
                        "description": "What the image shows: subject, style, lighting, composition, as a comma-separated description (\"a lighthouse at dusk, oil painting, warm light\"). At most 4000 characters.",
                    ]),
                    "negative_prompt": .object([
                        "type": "string",
                        "description": "What the image should not show (\"blurry, text, watermark\"). Default: empty.",
                    ]),
                    "size": .object([
                        "type": "string",
                        "pattern": "^[0-9]+x[0-9]+$",
                        "description": "Width x height in pixels, e.g. \"512x512\" or \"768x512\". Both must be multiples of 8, from 64 to the server's limit (2048 by default). Larger images take much longer. Default: the model's usual size (512x512 for SD 1.x).",
                    ]),
                    "steps": .object([
                        "type": "integer", "minimum": 1, "maximum": 150,
                        "description": "Denoising steps: more is slower and usually finer. 20 to 30 is typical. Default: 20.",
                    ]),
                    "seed": .object([
                        "type": "integer", "minimum": -1,
                        "description": "Random seed. The same seed, prompt and settings give the same image. -1 or absent: a random seed (returned in the result).",
                    ]),
                    "model": .object([
                        "type": "string",
                        "description": "Model id from list_models. Default: the server's default model.",
                    ]),
                    "cfg_scale": .object([
                        "type": "number", "minimum": 1, "maximum": 30,
                        "description": "How strictly the image follows the prompt (classifier-free guidance). 5 to 9 is typical. Default: 7.",
                    ]),
                    "sampler": .object([
                        "type": "string",
                        "description": "Sampler name as in AUTOMATIC1111, e.g. \"Euler a\", \"DPM++ 2M Karras\", \"DDIM\". Default: \"Euler a\".",
                    ]),
                    "wait_seconds": .object([
                        "type": "integer", "minimum": 1, "maximum": 3600,
                        "description": "How long to wait for the image before returning only the job id (then call get_job with wait_seconds). Default: 240, below the 300-second read timeout of common MCP clients.",
                    ]),
                ]),
                "required": .array(["prompt"]),
                "additionalProperties": false,
            ]),
            annotations: .init(readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false)
        ),
        Tool(
            name: "list_models",
            title: "List models",
            description: """
                Lists the image models Easel can use: each model's id (pass it as `model` to \
                generate_image), its architecture (e.g. sd15, sdxl), whether it is the default and \
                whether it is loaded now (a loaded model starts generating at once; another one \
                loads first, which can take a while).
                """,
            inputSchema: .object(["type": "object", "properties": .object([:]), "additionalProperties": false]),
            annotations: .init(readOnlyHint: true, openWorldHint: false)
        ),
        Tool(
            name: "get_job",
            title: "Get a job",
            description: """
                Shows a generation job: its state (queued, running, succeeded, failed, cancelled), \
                progress (step of total_steps, ETA in seconds), its parameters and, once it \
                succeeded, its images (returned as images, with their URLs and seeds). Use it for a \
                job that generate_image returned before it finished; wait_seconds makes it wait for the end.
                """,
            inputSchema: .object([
                "type": "object",
                "properties": .object([
                    "job_id": jobIDSchema,
                    "wait_seconds": .object([
                        "type": "integer", "minimum": 0, "maximum": 3600,
                        "description": "Wait up to this many seconds for the job to finish before answering. Default: 0 (answer at once).",
                    ]),
                ]),
                "required": .array(["job_id"]),
                "additionalProperties": false,
            ]),
            annotations: .init(readOnlyHint: true, openWorldHint: false)
        ),
        Tool(
            name: "cancel_job",
            title: "Cancel a job",
            description: """
                Cancels a queued or running generation job. A running job stops at its next step. \
                Cancelling a job that already ended changes nothing and returns its final state.
                """,
            inputSchema: .object([
                "type": "object",
                "properties": .object(["job_id": jobIDSchema]),
                "required": .array(["job_id"]),
                "additionalProperties": false,
            ]),
            annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false)
        ),
    ]

    // MARK: - Calls

    /// Runs one tool. Bad arguments (and requests Easel rejects as invalid) throw
    /// `MCPError.invalidParams`; failures of the generation itself come back as a result
    /// with `isError`, so the model can read what went wrong.
    public static func call(_ name: String, arguments: [String: Value], client: EaselAPIClient) async throws -> CallTool.Result {
        do {
            switch name {
            case "generate_image": return try await generateImage(arguments, client: client)
            case "list_models": return try await listModels(arguments, client: client)
            case "get_job": return try await getJob(arguments, client: client)
            case "cancel_job": return try await cancelJob(arguments, client: client)
            default:
                throw MCPError.invalidParams("unknown tool '\(name)'; the tools are \(tools.map(\.name).joined(separator: ", "))")
            }
        } catch let error as EaselAPIClient.APIError where error.isInvalidRequest {
            throw MCPError.invalidParams(error.field.map { "\($0): \(error.message)" } ?? error.message)
        } catch let error as EaselAPIClient.APIError {
            return .init(content: [text(error.description)], isError: true)
        } catch let error as EaselAPIClient.ConnectionError {
            return .init(content: [text(error.description)], isError: true)
        }
    }

    static let generateKeys: Set<String> = ["prompt", "negative_prompt", "size", "steps", "seed", "model", "cfg_scale", "sampler", "wait_seconds"]

    static func generateImage(_ arguments: [String: Value], client: EaselAPIClient) async throws -> CallTool.Result {
        let arguments = try Arguments(arguments, known: generateKeys)
        guard let prompt = try arguments.string("prompt"), !prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw MCPError.invalidParams("prompt: required, a non-empty description of the image")
        }
        var body: [String: Any] = ["prompt": prompt, "batch_size": 1, "output_format": "png"]
        if let negative = try arguments.string("negative_prompt") { body["negative_prompt"] = negative }
        if let size = try arguments.string("size") {
            let parts = size.lowercased().split(separator: "x", omittingEmptySubsequences: false)
            guard parts.count == 2, let width = Int(parts[0]), let height = Int(parts[1]), width > 0, height > 0 else {
                throw MCPError.invalidParams("size: must be WIDTHxHEIGHT in pixels, e.g. \"512x512\", not '\(size)'")
            }
            body["width"] = width
            body["height"] = height
        }
        if let steps = try arguments.integer("steps") { body["steps"] = steps }
        if let seed = try arguments.integer("seed"), seed >= 0 { body["seed"] = seed }
        if let model = try arguments.string("model") { body["model"] = model }
        if let cfg = try arguments.number("cfg_scale") { body["cfg_scale"] = cfg }
        if let sampler = try arguments.string("sampler") { body["sampler"] = sampler }
        let wait = try arguments.integer("wait_seconds") ?? 240
        guard (1...3600).contains(wait) else { throw MCPError.invalidParams("wait_seconds: must be between 1 and 3600") }

        let submitted = try await client.submitJob(body)
        guard let jobID = submitted["id"] as? String else {
            return .init(content: [text("Easel did not return a job id")], isError: true)
        }
        let job: [String: Any]
        do {
            job = try await client.waitForJob(jobID, timeout: TimeInterval(wait))
        } catch is CancellationError {
            // The client gave up on the call: the image is no longer wanted.
            _ = try? await client.cancelJob(jobID)
            throw CancellationError()
        }
        return try await result(for: job, client: client)
    }

    static func listModels(_ arguments: [String: Value], client: EaselAPIClient) async throws -> CallTool.Result {
        _ = try Arguments(arguments, known: [])
        let list = try await client.listModels()
        let models = (list["data"] as? [[String: Any]] ?? []).map { model -> [String: Any] in
            var entry: [String: Any] = ["id": model["id"] ?? "", "default": model["default"] ?? false, "loaded": model["loaded"] ?? false]
            for key in ["architecture", "format", "engine", "problem"] { if let value = model[key], !(value is NSNull) { entry[key] = value } }
            return entry
        }
        var summary: [String: Any] = ["models": models]
        if let defaultModel = list["default_model"], !(defaultModel is NSNull) { summary["default_model"] = defaultModel }
        return .init(content: [text(jsonText(summary))], isError: false)
    }

    static func getJob(_ arguments: [String: Value], client: EaselAPIClient) async throws -> CallTool.Result {
        let arguments = try Arguments(arguments, known: ["job_id", "wait_seconds"])
        let id = try arguments.jobID()
        let wait = try arguments.integer("wait_seconds") ?? 0
        guard (0...3600).contains(wait) else { throw MCPError.invalidParams("wait_seconds: must be between 0 and 3600") }
        let job = wait > 0 ? try await client.waitForJob(id, timeout: TimeInterval(wait)) : try await client.job(id)
        return try await result(for: job, client: client)
    }

    static func cancelJob(_ arguments: [String: Value], client: EaselAPIClient) async throws -> CallTool.Result {
        let arguments = try Arguments(arguments, known: ["job_id"])
        var job = try await client.cancelJob(try arguments.jobID())
        // A running job stops at its next step: wait a little for it, so the answer is final.
        if let id = job["id"] as? String, !["succeeded", "failed", "cancelled"].contains(job["state"] as? String ?? "") {
            job = try await client.waitForJob(id, timeout: 30)
        }
        return .init(content: [text(jsonText(summary(of: job, client: client)))], isError: false)
    }

    /// A job as a tool result: a JSON summary, and the images once it succeeded.
    static func result(for job: [String: Any], client: EaselAPIClient) async throws -> CallTool.Result {
        let state = job["state"] as? String ?? "unknown"
        var content: [Tool.Content] = []
        var summary = summary(of: job, client: client)
        switch state {
        case "succeeded":
            for image in job["images"] as? [[String: Any]] ?? [] {
                guard let path = image["url"] as? String else { continue }
                let data = try await client.image(path)
                let format = image["format"] as? String ?? "png"
                content.append(.image(data: data.base64EncodedString(), mimeType: "image/\(format)", annotations: nil, _meta: nil))
            }
        case "failed":
            let error = job["error"] as? [String: Any]
            let message = "The job failed: \(error?["message"] as? String ?? "no reason given")"
            return .init(content: [text(message), text(jsonText(summary))], isError: true)
        case "cancelled":
            return .init(content: [text("The job was cancelled."), text(jsonText(summary))], isError: true)
        default:
            summary["note"] = "The job has not finished yet; call get_job with this job_id (and wait_seconds) to get the image."
        }
        content.insert(text(jsonText(summary)), at: 0)
        return .init(content: content, isError: false)
    }

    static func summary(of job: [String: Any], client: EaselAPIClient) -> [String: Any] {
        var summary: [String: Any] = ["job_id": job["id"] ?? "", "state": job["state"] ?? ""]
        for key in ["step", "total_steps", "eta_seconds", "queue_position", "model"] {
            if let value = job[key], !(value is NSNull) { summary[key] = value }
        }
        if let error = job["error"] as? [String: Any] { summary["error"] = error["message"] ?? error }
        if let parameters = job["parameters"] as? [String: Any] {
            var kept: [String: Any] = [:]
            for key in ["prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "sampler", "seed"] {
                if let value = parameters[key] { kept[key] = value }
            }
            summary["parameters"] = kept
        }
        let images = (job["images"] as? [[String: Any]] ?? []).map { image -> [String: Any] in
            var entry: [String: Any] = [:]
            if let path = image["url"] as? String { entry["url"] = client.publicURL(path).absoluteString }
            for key in ["id", "seed", "width", "height", "format"] { if let value = image[key] { entry[key] = value } }
            return entry
        }
        if !images.isEmpty {
            summary["images"] = images
            if let seed = images[0]["seed"] { summary["seed"] = seed }
            if let url = images[0]["url"] { summary["url"] = url }
        }
        return summary
    }

    static func text(_ text: String) -> Tool.Content { .text(text: text, annotations: nil, _meta: nil) }

    static func jsonText(_ object: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Typed access to tool arguments; a wrong type or an unknown name is an MCP
/// `invalid_params` error naming the argument.
struct Arguments {
    let values: [String: Value]

    init(_ values: [String: Value], known: Set<String>) throws {
        if let unknown = values.keys.sorted().first(where: { !known.contains($0) }) {
            let expected = known.isEmpty ? "this tool takes no arguments" : "expected: \(known.sorted().joined(separator: ", "))"
            throw MCPError.invalidParams("unknown argument '\(unknown)'; \(expected)")
        }
        self.values = values
    }

    func string(_ name: String) throws -> String? {
        switch values[name] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw MCPError.invalidParams("\(name): must be a string")
        }
    }

    func integer(_ name: String) throws -> Int? {
        switch values[name] {
        case nil, .null?: return nil
        case .int(let value)?: return value
        case .double(let value)? where value.rounded() == value && abs(value) < 1e15: return Int(value)
        case .string(let text)? where Int(text) != nil: return Int(text)
        default: throw MCPError.invalidParams("\(name): must be an integer")
        }
    }

    func number(_ name: String) throws -> Double? {
        switch values[name] {
        case nil, .null?: return nil
        case .int(let value)?: return Double(value)
        case .double(let value)?: return value
        case .string(let text)? where Double(text) != nil: return Double(text)
        default: throw MCPError.invalidParams("\(name): must be a number")
        }
    }

    func jobID() throws -> String {
        guard let id = try string("job_id"), !id.isEmpty else { throw MCPError.invalidParams("job_id: required, e.g. \"job_3f1c…\"") }
        return id
    }
}
