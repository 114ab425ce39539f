import EaselCore
import Foundation
import GRDB

/// The embedded job store: one SQLite database (`jobs.sqlite`, WAL mode) and an `images/`
/// folder beside it, where image `<id>` is the file `<id>.<format>`.
///
/// Each job is kept whole as a JSON document; the other columns copy the fields that
/// listings filter on and that retention needs.
public final class SQLiteJobStore: JobStore {
    /// The folder given at init.
    public let folder: URL
    /// Where the image files are.
    public let imagesFolder: URL
    let dbPool: DatabasePool

    /// Opens the store in `folder`, creating the folder, the database and `images/` as
    /// needed, and brings the schema up to date.
    public init(folder: URL) throws {
        self.folder = folder
        self.imagesFolder = folder.appendingPathComponent("images", isDirectory: true)
        try FileManager.default.createDirectory(at: imagesFolder, withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.label = "EaselStore"
        configuration.busyMode = .timeout(10)
        // A DatabasePool always runs in WAL mode.
        dbPool = try DatabasePool(path: folder.appendingPathComponent("jobs.sqlite").path, configuration: configuration)
        try Self.migrator.migrate(dbPool)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE job (
                    id TEXT PRIMARY KEY NOT NULL,
                    state TEXT NOT NULL,
                    priority INTEGER NOT NULL,
                    model TEXT NOT NULL,
                    batch_id TEXT,
                    created_at REAL NOT NULL,
                    finished_at REAL,
                    images_bytes INTEGER NOT NULL DEFAULT 0,
                    document TEXT NOT NULL
                );
                CREATE INDEX job_state ON job(state);
                CREATE INDEX job_created_at ON job(created_at);
                """)
        }
        migrator.registerMigration("v2-parameters") { db in
            try db.execute(sql: """
                CREATE TABLE setting (
                    key TEXT PRIMARY KEY NOT NULL,
                    document TEXT NOT NULL
                );
                CREATE TABLE preset (
                    name TEXT PRIMARY KEY NOT NULL,
                    document TEXT NOT NULL
                );
                """)
        }
        return migrator
    }

    // MARK: - Jobs

    public func save(_ job: Job) async throws {
        let document = try Self.encode(job)
        let imagesBytes = job.images.reduce(Int64(0)) { $0 + Int64($1.byteCount) }
        try await dbPool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO job (id, state, priority, model, batch_id, created_at, finished_at, images_bytes, document)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET
                        state = excluded.state, priority = excluded.priority, model = excluded.model,
                        batch_id = excluded.batch_id, created_at = excluded.created_at,
                        finished_at = excluded.finished_at, images_bytes = excluded.images_bytes,
                        document = excluded.document
                    """,
                arguments: [
                    job.id, job.state.rawValue, job.priority, job.spec.modelID, job.batchID,
                    Self.seconds(job.createdAt), job.finishedAt.map(Self.seconds), imagesBytes, document,
                ]
            )
        }
    }

    public func job(id: String) async throws -> Job? {
        let document = try await dbPool.read { db in
            try String.fetchOne(db, sql: "SELECT document FROM job WHERE id = ?", arguments: [id])
        }
        return try document.map(Self.decode)
    }

    public func jobs(matching filter: JobFilter) async throws -> [Job] {
        var conditions: [String] = []
        var arguments = StatementArguments()
        if let state = filter.state {
            conditions.append("state = ?")
            arguments += [state.rawValue]
        }
        if let model = filter.model {
            conditions.append("model = ?")
            arguments += [model]
        }
        if let since = filter.since {
            conditions.append("created_at >= ?")
            arguments += [Self.seconds(since)]
        }
        if let batchID = filter.batchID {
            conditions.append("batch_id = ?")
            arguments += [batchID]
        }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        arguments += [max(0, filter.limit), max(0, filter.offset)]
        let sql = "SELECT document FROM job \(whereClause) ORDER BY created_at DESC, id ASC LIMIT ? OFFSET ?"
        let documents = try await dbPool.read { [arguments] db in
            try String.fetchAll(db, sql: sql, arguments: arguments)
        }
        return try documents.map(Self.decode)
    }

    public func unfinishedJobs() async throws -> [Job] {
        let documents = try await dbPool.read { db in
            try String.fetchAll(
                db,
                sql: "SELECT document FROM job WHERE state IN (?, ?) ORDER BY created_at ASC, id ASC",
                arguments: [Job.State.queued.rawValue, Job.State.running.rawValue]
            )
        }
        return try documents.map(Self.decode)
    }

    // MARK: - Images

    /// Whether `id` is an image id, `job_<32 lowercase hex>-<index>`. Only ids that pass
    /// become file names, so no id can name a file outside `images/`.
    public static func isValidImageID(_ id: String) -> Bool {
        // Checked byte by byte as well as by the pattern, so no Unicode equivalence or
        // combining mark can slip through the character classes.
        guard id.utf8.count <= 64, id.utf8.allSatisfy({ $0 >= 0x21 && $0 < 0x7F }) else { return false }
        let pattern = #/job_[0-9a-f]{32}-[0-9]+/#.matchingSemantics(.unicodeScalar)
        return (try? pattern.wholeMatch(in: id)) != nil
    }

    /// The file image `id` is kept in, or nil when `id` is not a valid image id.
    public func imageURL(id: String, format: ImageFormat) -> URL? {
        guard Self.isValidImageID(id) else { return nil }
        return imagesFolder.appendingPathComponent("\(id).\(format.rawValue)", isDirectory: false)
    }

    public func saveImage(_ image: Job.Image, data: Data) async throws {
        guard let url = imageURL(id: image.id, format: image.format) else {
            throw EaselError.invalid("image id", "'\(image.id)' is not of the form job_<32 hex>-<index>")
        }
        try await Self.offPool {
            try data.write(to: url, options: .atomic)
        }
    }

    public func imageData(id: String) async throws -> Data? {
        guard Self.isValidImageID(id) else { return nil }
        let urls = ImageFormat.allCases.compactMap { imageURL(id: id, format: $0) }
        return try await Self.offPool {
            for url in urls where FileManager.default.fileExists(atPath: url.path) {
                do {
                    return try Data(contentsOf: url)
                } catch where !FileManager.default.fileExists(atPath: url.path) {
                    continue  // deleted since the check
                }
            }
            return nil
        }
    }

    // MARK: - Retention

    public func enforceRetention(maxAge: TimeInterval, maxBytes: Int64, now: Date) async throws -> [String] {
        let cutoff = Self.seconds(now.addingTimeInterval(-maxAge))
        let finalStates = Job.State.allCases.filter(\.isFinal).map(\.rawValue)
        let placeholders = finalStates.map { _ in "?" }.joined(separator: ", ")
        let deleted: [Job] = try await dbPool.write { db in
            var total = try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(images_bytes), 0) FROM job") ?? 0
            // Final jobs, oldest first (finished_at, or created_at when unset), until one is
            // recent enough and the images fit.
            var doomed: [String] = []
            let cursor = try Row.fetchCursor(
                db,
                sql: """
                    SELECT id, images_bytes, COALESCE(finished_at, created_at) AS ended FROM job
                    WHERE state IN (\(placeholders))
                    ORDER BY ended ASC, id ASC
                    """,
                arguments: StatementArguments(finalStates)
            )
            while let row = try cursor.next() {
                let ended: Double = row["ended"]
                guard ended < cutoff || total > maxBytes else { break }
                doomed.append(row["id"])
                total -= row["images_bytes"] as Int64
            }
            var deleted: [Job] = []
            for id in doomed {
                if let document = try String.fetchOne(db, sql: "SELECT document FROM job WHERE id = ?", arguments: [id]) {
                    deleted.append(try Self.decode(document))
                }
                try db.execute(sql: "DELETE FROM job WHERE id = ?", arguments: [id])
            }
            return deleted
        }
        // Rows first, then files: a crash in between leaves stray files, never a job
        // whose images are gone.
        let urls = deleted.flatMap(imageURLs(of:))
        if !urls.isEmpty {
            // The rows are gone already; a file that cannot be removed must not hide that.
            await Self.offPool {
                for url in urls {
                    try? FileManager.default.removeItem(at: url)
                }
            }
        }
        return deleted.map(\.id)
    }

    /// Every file that may hold one of `job`'s images: those it lists, and any other
    /// `<job id>-<index>` its batch could have written before it was recorded.
    private func imageURLs(of job: Job) -> [URL] {
        var urls = job.images.compactMap { imageURL(id: $0.id, format: $0.format) }
        for index in 0..<max(job.spec.batchSize, job.images.count) {
            for format in ImageFormat.allCases {
                if let url = imageURL(id: "\(job.id)-\(index)", format: format), !urls.contains(url) {
                    urls.append(url)
                }
            }
        }
        return urls
    }

    // MARK: - Helpers

    /// Dates in the filter and retention columns: seconds since 1970 as a REAL, so
    /// comparisons keep full precision.
    private static func seconds(_ date: Date) -> Double { date.timeIntervalSince1970 }

    /// The default strategies keep dates as their exact `Double`, so a job reads back equal.
    private static func encode(_ job: Job) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(job), as: UTF8.self)
    }

    private static func decode(_ document: String) throws -> Job {
        try JSONDecoder().decode(Job.self, from: Data(document.utf8))
    }

    /// Runs blocking file work on a Dispatch queue rather than the cooperative pool.
    private static func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .utility).async {
                continuation.resume(with: Result { try work() })
            }
        }
    }

    private static func offPool(_ work: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            DispatchQueue.global(qos: .utility).async {
                work()
                continuation.resume()
            }
        }
    }
}
