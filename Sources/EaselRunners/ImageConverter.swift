import EaselCore
import Foundation

/// Image work done with Pillow in the runner environment: re-encoding stored images in
/// another format, turning OpenAI-style masks into native ones. Rare enough
/// (`GET /v1/images/{id}?format=jpeg`, `/v1/images/edits`) that a short-lived process is fine.
public struct ImageConverter: Sendable {
    let environment: RunnerEnvironment

    public func convert(_ data: Data, to format: ImageFormat) async throws -> Data {
        do {
            return try await runFilter(module: "easel_runner.convert", arguments: ["--format", format.rawValue], input: data)
        } catch let failure as FilterFailure {
            throw EaselError(.engineError, "converting the image to \(format.rawValue) failed: \(failure.detail)")
        }
    }

    /// An OpenAI-style mask (transparent where the image should change) as a native
    /// one: a grayscale PNG, white where the engine repaints. A mask without
    /// transparency is taken as it is (white repaints).
    public func maskFromAlpha(_ data: Data) async throws -> Data {
        do {
            return try await runFilter(module: "easel_runner.alpha_mask", arguments: [], input: data)
        } catch let failure as FilterFailure {
            throw EaselError(.invalidField, "reading the mask failed: \(failure.detail)", field: "mask")
        }
    }

    /// Why a filter gave no output: the last line it wrote to stderr, or its exit status.
    struct FilterFailure: Error {
        let detail: String
    }

    /// Runs `python -m module arguments` with `data` on stdin and returns its stdout.
    private func runFilter(module: String, arguments: [String], input data: Data) async throws -> Data {
        let launch = try await environment.prepare()
        let process = Process()
        process.executableURL = launch.python
        process.arguments = ["-m", module] + arguments
        process.environment = launch.environment
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        let exit = try process.start()
        let converted = OneShot<Data>()
        let message = OneShot<Data>()
        Thread.detachNewThread {
            try? input.fileHandleForWriting.write(contentsOf: data)
            try? input.fileHandleForWriting.close()
        }
        Thread.detachNewThread { converted.resolve((try? output.fileHandleForReading.readToEnd()) ?? Data()) }
        Thread.detachNewThread { message.resolve((try? errors.fileHandleForReading.readToEnd()) ?? Data()) }
        let status = await exit.wait
        let bytes = await converted.wait
        guard status == .exited(0), !bytes.isEmpty else {
            let detail = String(decoding: await message.wait, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? "\(status)"
            throw FilterFailure(detail: detail)
        }
        return bytes
    }
}
