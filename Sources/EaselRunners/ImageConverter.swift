import EaselCore
import Foundation

/// Re-encodes stored images in another format with Pillow in the runner environment;
/// rare enough (`GET /v1/images/{id}?format=jpeg`) that a short-lived process is fine.
public struct ImageConverter: Sendable {
    let environment: RunnerEnvironment

    public func convert(_ data: Data, to format: ImageFormat) async throws -> Data {
        let launch = try await environment.prepare()
        let process = Process()
        process.executableURL = launch.python
        process.arguments = ["-m", "easel_runner.convert", "--format", format.rawValue]
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
            throw EaselError(.engineError, "converting the image to \(format.rawValue) failed: \(detail)")
        }
        return bytes
    }
}
