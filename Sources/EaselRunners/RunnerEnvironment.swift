import EaselCore
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The runner's Python virtualenv: created under the data folder with the pinned
/// requirements the first time it is needed, reused afterwards, and made again when
/// the requirements change. Optional engines (`--install-engine`) are added on top and
/// never removed, so servers with and without them can share one virtualenv. Several
/// servers sharing one virtualenv take turns through a lock file.
public actor RunnerEnvironment {
    private let settings: Settings
    private let logger: Logger
    private var preparation: Task<RunnerLaunch, Error>?

    public init(settings: Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    /// The launch recipe for runners, setting the virtualenv up first when needed.
    public func prepare() async throws -> RunnerLaunch {
        if let preparation { return try await preparation.value }
        let task = Task { try await self.build() }
        preparation = task
        do {
            return try await task.value
        } catch {
            // A failed set-up is retried by the next caller rather than remembered forever.
            preparation = nil
            throw EaselError(.runnerSetupFailed, (error as? EaselError)?.message ?? "\(error)")
        }
    }

    /// Runs `python -m module arguments…` in the virtualenv to completion, logging its output.
    public func runTool(_ module: String, _ arguments: [String]) async throws {
        let launch = try await prepare()
        try await ProcessRunner.run(
            launch.python, ["-m", module] + arguments, environment: launch.environment, logger: logger
        )
    }

    private func build() async throws -> RunnerLaunch {
        let source = try locateRunnerSource()
        let venv = settings.runnerVenvURL
        let python = venv.appendingPathComponent("bin/python")
        let requirements = ["requirements.txt", "requirements-nodeps.txt"].map { source.appendingPathComponent($0) }
        let wanted = try requirements.map { try String(contentsOf: $0, encoding: .utf8) }.joined(separator: "\n--no-deps\n")
        let marker = venv.appendingPathComponent(".easel-requirements")

        let fileManager = FileManager.default
        try fileManager.createDirectory(at: venv.deletingLastPathComponent(), withIntermediateDirectories: true)
        let lock = try await FileLock.acquire(venv.path + ".lock")
        defer { lock.release() }

        let installed = try? String(contentsOf: marker, encoding: .utf8)
        let rebuilt = installed != wanted || !fileManager.isExecutableFile(atPath: python.path)
        if rebuilt {
            logger.notice("setting up the runner environment in \(venv.path) (first start; pip installs torch and diffusers, this takes a few minutes)")
            try? fileManager.removeItem(at: marker)
            try await ProcessRunner.run(
                try findExecutable(settings.python), ["-m", "venv", "--clear", venv.path], environment: nil, logger: logger
            )
            let pip = ["-m", "pip", "install", "--progress-bar", "off"]
            try await ProcessRunner.run(python, pip + ["-r", requirements[0].path], environment: nil, logger: logger)
            try await ProcessRunner.run(python, pip + ["--no-deps", "-r", requirements[1].path], environment: nil, logger: logger)
            try wanted.write(to: marker, atomically: true, encoding: .utf8)
            logger.notice("runner environment ready")
        }
        for engine in Set(settings.installEngine.compactMap(EngineKind.init(rawValue:))).sorted(by: { $0.rawValue < $1.rawValue }) {
            try await installOptionalEngine(engine, source: source, venv: venv, python: python, after: rebuilt)
        }

        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = source.path
        environment["PYTHONUNBUFFERED"] = "1"
        // Nothing may reach a model hub: every file the engines need is local.
        environment["HF_HUB_OFFLINE"] = "1"
        environment["TRANSFORMERS_OFFLINE"] = "1"
        environment["HF_HUB_DISABLE_TELEMETRY"] = "1"
        return RunnerLaunch(python: python, arguments: ["-m", "easel_runner"], environment: environment)
    }

    /// Installs an optional engine's requirements unless its marker says they are there already.
    private func installOptionalEngine(_ engine: EngineKind, source: URL, venv: URL, python: URL, after rebuilt: Bool) async throws {
        guard let fileName = engine.optionalRequirements else { return }
        let requirements = source.appendingPathComponent(fileName)
        let wanted = try String(contentsOf: requirements, encoding: .utf8)
        let marker = venv.appendingPathComponent(".easel-requirements-\(engine.rawValue)")
        guard rebuilt || (try? String(contentsOf: marker, encoding: .utf8)) != wanted else { return }
        logger.notice("installing the \(engine.rawValue) engine into \(venv.path) (the first time, pip compiles it: several minutes)")
        try? FileManager.default.removeItem(at: marker)
        try await ProcessRunner.run(
            python, ["-m", "pip", "install", "--progress-bar", "off", "-r", requirements.path], environment: nil, logger: logger
        )
        try wanted.write(to: marker, atomically: true, encoding: .utf8)
    }

    /// The folder holding `easel_runner/`: the setting, else `runner/` beside the
    /// executable or one of its parent folders (a build inside the checkout), else in
    /// the working folder.
    private func locateRunnerSource() throws -> URL {
        func holdsRunner(_ url: URL) -> Bool {
            FileManager.default.fileExists(atPath: url.appendingPathComponent("easel_runner/__main__.py").path)
        }
        if let configured = settings.runnerSource {
            let url = URL(fileURLWithPath: configured).standardizedFileURL
            guard holdsRunner(url) else {
                throw EaselError(.runnerSetupFailed, "--runner-source \(url.path) holds no easel_runner package")
            }
            return url
        }
        var candidates: [URL] = []
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        while folder.path != "/" {
            candidates.append(folder.appendingPathComponent("runner"))
            folder.deleteLastPathComponent()
        }
        candidates.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("runner"))
        guard let found = candidates.first(where: holdsRunner) else {
            throw EaselError(.runnerSetupFailed, "cannot find the runner package (runner/easel_runner); set --runner-source")
        }
        return found.standardizedFileURL
    }

    private func findExecutable(_ name: String) throws -> URL {
        if name.contains("/") { return URL(fileURLWithPath: name) }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for folder in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(folder)).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw EaselError(.runnerSetupFailed, "'\(name)' is not on PATH; install Python 3.10+ or set --python")
    }
}

/// Runs a command to completion, copying its output into the log line by line.
enum ProcessRunner {
    static func run(_ executable: URL, _ arguments: [String], environment: [String: String]?, logger: Logger) async throws {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        let command = ([executable.lastPathComponent] + arguments).joined(separator: " ")
        let exit: OneShot<ProcessExit>
        do {
            exit = try process.start()
        } catch {
            throw EaselError(.runnerSetupFailed, "cannot run \(command): \(error)")
        }
        try? output.fileHandleForWriting.close()
        let reader = output.fileHandleForReading
        let tail = LogTail()
        Thread.detachNewThread {
            forEachLine(of: reader.fileDescriptor) { line in
                logger.info("\(line)")
                tail.add(line)
            }
            try? reader.close()
        }
        let status = await exit.wait
        guard status == .exited(0) else {
            throw EaselError(.runnerSetupFailed, "\(command) \(status): \(tail.text)")
        }
    }
}

/// The last lines a command printed, for its error message.
private final class LogTail: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []

    func add(_ line: String) {
        lock.withLock {
            lines.append(line)
            if lines.count > 8 { lines.removeFirst() }
        }
    }

    var text: String { lock.withLock { lines.joined(separator: " | ") } }
}

/// An exclusive `flock` on a file, polled so that waiting never blocks an executor thread.
final class FileLock {
    private let descriptor: Int32

    static func acquire(_ path: String) async throws -> FileLock {
        let descriptor = open(path, O_CREAT | O_RDWR, 0o644)
        guard descriptor >= 0 else {
            throw EaselError(.runnerSetupFailed, "cannot open lock file \(path): errno \(errno)")
        }
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            try await Task.sleep(for: .milliseconds(500))
        }
        return FileLock(descriptor: descriptor)
    }

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    func release() {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
