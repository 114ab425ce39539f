import EaselCore
import Foundation

extension ImageConverter {
    /// An OpenAI-style mask (transparent where the image should change) as a native
    /// one: a grayscale PNG, white where the engine repaints. A mask without
    /// transparency is taken as it is (white repaints).
    public func maskFromAlpha(_ data: Data) async throws -> Data {
        try await runFilter(module: "easel_runner.alpha_mask", arguments: [], input: data, what: "reading the mask")
    }

    func runFilter(module: String, arguments: [String], input data: Data, what: String) async throws -> Data {
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
            throw EaselError(.invalidField, "\(what) failed: \(detail)", field: "mask")
        }
        return bytes
    }
}
