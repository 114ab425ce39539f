import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CPU and memory of the host and of processes, read from /proc on Linux. On macOS only
/// what is cheap to get is filled in; the rest is nil.
enum SystemStats {
    struct Memory: Sendable {
        var totalBytes: Int64
        var availableBytes: Int64?
        var usedBytes: Int64? { availableBytes.map { totalBytes - $0 } }
    }

    static var cpuCount: Int { ProcessInfo.processInfo.activeProcessorCount }

    static func hostMemory() -> Memory {
        #if os(Linux)
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
            var fields: [String: Int64] = [:]
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                if parts.count >= 2, let value = Int64(parts[1]) {
                    fields[String(parts[0].dropLast())] = value * 1024
                }
            }
            if let total = fields["MemTotal"] {
                return Memory(totalBytes: total, availableBytes: fields["MemAvailable"] ?? fields["MemFree"])
            }
        }
        #endif
        return Memory(totalBytes: Int64(ProcessInfo.processInfo.physicalMemory), availableBytes: nil)
    }

    /// Resident set size of process `pid` in bytes, or nil when it cannot be read (gone).
    static func residentBytes(pid: Int32) -> Int64? {
        #if os(Linux)
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int64(fields[1]) else { return nil }
        return pages * Int64(sysconf(Int32(_SC_PAGESIZE)))
        #else
        guard pid == getpid() else { return nil }
        var usage = rusage()
        getrusage(RUSAGE_SELF, &usage)
        return Int64(usage.ru_maxrss)  // bytes on macOS (the peak)
        #endif
    }

    static func loadAverage() -> [Double]? {
        var loads = [Double](repeating: 0, count: 3)
        return getloadavg(&loads, 3) == 3 ? loads : nil
    }

    /// Busy and total CPU time of the host, in clock ticks (the `cpu` line of /proc/stat).
    static func hostCPUTicks() -> (busy: UInt64, total: UInt64)? {
        #if os(Linux)
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        else { return nil }
        let values = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard values.count >= 5 else { return nil }
        // user nice system idle iowait irq softirq steal; guest time is already in user.
        let total = values.prefix(8).reduce(0, +)
        let idle = values[3] + values[4]
        return (total - idle, total)
        #else
        return nil
        #endif
    }

    /// CPU time process `pid` has used (user + system), in seconds.
    static func processCPUSeconds(pid: Int32) -> Double? {
        #if os(Linux)
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
        #else
        guard pid == getpid() else { return nil }
        var usage = rusage()
        getrusage(RUSAGE_SELF, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
        #endif
    }
}

/// CPU use as a percentage over the time since the previous reading. The first reading
/// waits a moment for a second one, so every answer is a real measurement.
final class CPUSampler: @unchecked Sendable {
    struct Usage: Sendable {
        /// Percent of all cores together (100 means every core busy).
        var hostPercent: Double?
        /// Percent of one core (200 means two cores busy), as `top` shows it.
        var processPercent: Double?
    }

    private struct Reading {
        var at: ContinuousClock.Instant
        var host: (busy: UInt64, total: UInt64)?
        var process: Double?
    }

    private let lock = NSLock()
    private var previous: Reading?
    private var last = Usage()
    private let pid = getpid()

    private func read() -> Reading {
        Reading(at: .now, host: SystemStats.hostCPUTicks(), process: SystemStats.processCPUSeconds(pid: pid))
    }

    func usage() async -> Usage {
        if lock.withLock({ previous == nil }) {
            let first = read()
            lock.withLock { if previous == nil { previous = first } }
            try? await Task.sleep(for: .milliseconds(200))
        }
        let now = read()
        return lock.withLock {
            guard let before = previous, now.at - before.at >= .milliseconds(100) else { return last }
            var usage = Usage()
            if let a = before.host, let b = now.host, b.total > a.total, b.busy >= a.busy {
                usage.hostPercent = Self.rounded(100 * Double(b.busy - a.busy) / Double(b.total - a.total))
            }
            if let a = before.process, let b = now.process {
                let wall = Self.seconds(now.at - before.at)
                usage.processPercent = Self.rounded(100 * (b - a) / wall)
            }
            previous = now
            last = usage
            return usage
        }
    }

    private static func rounded(_ value: Double) -> Double { (value * 10).rounded() / 10 }

    private static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
