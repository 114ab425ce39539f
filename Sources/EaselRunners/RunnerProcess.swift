import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a child process ended.
public enum ProcessExit: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signalled(Int32)

    public var description: String {
        switch self {
        case .exited(let status): "exited with status \(status)"
        case .signalled(let signal): "was killed by signal \(signal)\(Self.signalNames[signal].map { " (\($0))" } ?? "")"
        }
    }

    private static let signalNames: [Int32: String] = [
        SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGSEGV: "SIGSEGV", SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGINT: "SIGINT",
    ]
}

/// A value that one side sets once and any number of others await.
final class OneShot<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value?
    private var waiters: [CheckedContinuation<Value, Never>] = []

    func resolve(_ newValue: Value) {
        let toResume: [CheckedContinuation<Value, Never>] = lock.withLock {
            guard value == nil else { return [] }
            value = newValue
            defer { waiters = [] }
            return waiters
        }
        toResume.forEach { $0.resume(returning: newValue) }
    }

    var wait: Value {
        get async {
            await withCheckedContinuation { continuation in
                let ready: Value? = lock.withLock {
                    if value == nil { waiters.append(continuation) }
                    return value
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}

extension Process {
    /// Starts the process; the result resolves when it ends.
    func start() throws -> OneShot<ProcessExit> {
        let exit = OneShot<ProcessExit>()
        terminationHandler = { finished in
            exit.resolve(
                finished.terminationReason == .uncaughtSignal
                    ? .signalled(finished.terminationStatus) : .exited(finished.terminationStatus)
            )
        }
        try run()
        return exit
    }
}

/// A child process spoken to in frames over its stdin and stdout. Its stderr goes to
/// the log line by line. Reading happens on dedicated threads so that a busy or stuck
/// child never blocks the server's executors.
final class RunnerProcess: Sendable {
    let pid: Int32
    /// The payloads of the frames the child writes; finishes at end of file and
    /// throws when the stream breaks the framing.
    let frames: AsyncThrowingStream<Data, Error>
    private let exit: OneShot<ProcessExit>
    private let input: FileDescriptorWriter

    init(executable: URL, arguments: [String], environment: [String: String], logger: Logger) throws {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        let stdinPipe = Pipe(), stdoutPipe = Pipe(), stderrPipe = Pipe()
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        let exit = try process.start()
        // The child holds its own copies; the parent's would keep the pipes open after
        // the child dies and hide the end of file that reports its death.
        try? stdinPipe.fileHandleForReading.close()
        try? stdoutPipe.fileHandleForWriting.close()
        try? stderrPipe.fileHandleForWriting.close()

        self.pid = process.processIdentifier
        self.exit = exit
        self.input = FileDescriptorWriter(handle: stdinPipe.fileHandleForWriting)
        let (frames, continuation) = AsyncThrowingStream<Data, Error>.makeStream()
        self.frames = frames
        let stdout = stdoutPipe.fileHandleForReading, stderr = stderrPipe.fileHandleForReading
        Thread.detachNewThread {
            Self.readFrames(from: stdout.fileDescriptor, into: continuation)
            try? stdout.close()
        }
        Thread.detachNewThread {
            forEachLine(of: stderr.fileDescriptor) { logger.info("\($0)", metadata: ["runner_pid": "\(process.processIdentifier)"]) }
            try? stderr.close()
        }
    }

    func send(_ payload: Data) throws {
        try input.writeAll(Frame.encode(payload))
    }

    func signal(_ signal: Int32) {
        kill(pid, signal)
    }

    /// Stops sending: the runner reads end of file and exits.
    func closeInput() {
        input.close()
    }

    var exitStatus: ProcessExit { get async { await exit.wait } }

    private static func readFrames(from descriptor: Int32, into continuation: AsyncThrowingStream<Data, Error>.Continuation) {
        var decoder = Frame.Decoder()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = read(descriptor, &chunk, chunk.count)
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            decoder.append(chunk[0..<count])
            do {
                while let frame = try decoder.next() { continuation.yield(frame) }
            } catch {
                continuation.finish(throwing: error)
                return
            }
        }
        if decoder.pendingByteCount > 0 {
            continuation.finish(throwing: Frame.Malformed(description: "stream ended inside a frame"))
        } else {
            continuation.finish()
        }
    }
}

/// Calls `handle` with each line read from `descriptor` until end of file.
func forEachLine(of descriptor: Int32, _ handle: (String) -> Void) {
    var pending = Data()
    var chunk = [UInt8](repeating: 0, count: 1 << 14)
    while true {
        let count = read(descriptor, &chunk, chunk.count)
        if count < 0, errno == EINTR { continue }
        guard count > 0 else { break }
        pending.append(contentsOf: chunk[0..<count])
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            handle(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
            pending = Data(pending[(newline + 1)...])
        }
    }
    if !pending.isEmpty { handle(String(decoding: pending, as: UTF8.self)) }
}

/// Writes whole buffers to a pipe from any thread, one writer at a time.
private final class FileDescriptorWriter: @unchecked Sendable {
    struct Closed: Error, CustomStringConvertible {
        let description = "the runner's input is closed"
    }

    private let lock = NSLock()
    private var handle: FileHandle?

    init(handle: FileHandle) {
        self.handle = handle
    }

    func writeAll(_ data: Data) throws {
        try lock.withLock {
            guard let handle else { throw Closed() }
            try data.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let written = write(handle.fileDescriptor, raw.baseAddress! + offset, raw.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
                    }
                    offset += written
                }
            }
        }
    }

    func close() {
        lock.withLock {
            try? handle?.close()
            handle = nil
        }
    }
}
