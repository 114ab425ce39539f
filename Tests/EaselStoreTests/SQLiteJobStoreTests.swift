import EaselCore
import EaselStore
import Foundation
import Testing

/// A fresh folder under the temporary directory; each test removes its own when it ends.
private struct TempFolder {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("EaselStoreTests-\(UUID().uuidString)", isDirectory: true)

    func remove() { try? FileManager.default.removeItem(at: url) }

    var images: URL { url.appendingPathComponent("images", isDirectory: true) }

    func imageFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: images.path).sorted()
    }
}

private func spec(model: String = "sd15", batch: Int = 1, format: ImageFormat = .png) -> GenerationSpec {
    GenerationSpec(
        modelID: model, prompt: "a lighthouse at dusk", negativePrompt: "blurry", width: 512, height: 768,
        steps: 25, cfgScale: 7.5, sampler: "euler_a", seeds: (0..<UInt64(batch)).map { 1234 + $0 },
        outputFormat: format, quality: 90
    )
}

private let epoch = Date(timeIntervalSince1970: 1_750_000_000)

private func makeJob(
    state: Job.State = .queued, model: String = "sd15", batchID: String? = nil,
    createdAt: Date = epoch, finishedAt: Date? = nil, imageBytes: [Int] = []
) -> Job {
    var job = Job(id: Job.newID(), priority: 0, spec: spec(model: model, batch: max(1, imageBytes.count)),
                  batchID: batchID, createdAt: createdAt)
    job.state = state
    job.finishedAt = finishedAt
    job.images = imageBytes.enumerated().map { index, bytes in
        Job.Image(id: "\(job.id)-\(index)", index: index, seed: 1234 + UInt64(index), format: .png,
                  width: 512, height: 768, byteCount: bytes)
    }
    return job
}

/// Saves `job` and writes each of its images with exactly `byteCount` bytes.
private func persist(_ job: Job, in store: SQLiteJobStore) async throws {
    for image in job.images {
        try await store.saveImage(image, data: Data(repeating: UInt8(image.index), count: image.byteCount))
    }
    try await store.save(job)
}

@Suite struct SQLiteJobStoreTests {
    @Test func createsDatabaseAndImagesFolder() throws {
        let temp = TempFolder()
        defer { temp.remove() }
        let store = try SQLiteJobStore(folder: temp.url)
        let database = temp.url.appendingPathComponent("jobs.sqlite")
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: database.path))
        #expect(FileManager.default.fileExists(atPath: temp.images.path, isDirectory: &isDirectory))
        #expect(isDirectory.boolValue)
        #expect(store.folder == temp.url)
        // The SQLite header's read and write versions (bytes 18 and 19) are 2 in WAL mode.
        let header = try Data(contentsOf: database).prefix(20)
        #expect(Array(header.suffix(2)) == [2, 2])
        // Opening an existing store again is fine (the migration is not rerun).
        _ = try SQLiteJobStore(folder: temp.url)
        withExtendedLifetime(store) {}
    }

    @Test func fullJobSurvivesReopening() async throws {
        let temp = TempFolder()
        defer { temp.remove() }
        let created = Date()  // sub-second precision, which must survive
        var job = Job(
            id: Job.newID(), priority: 7, spec: spec(batch: 2, format: .webp),
            webhook: "https://example.com/hook?x=1", batchID: "batch_42", createdAt: created
        )
        job.state = .failed
        job.startedAt = created.addingTimeInterval(0.123456789)
        job.finishedAt = created.addingTimeInterval(3.987654321)
        job.step = 13
        job.failure = Job.Failure(code: "engine_failed", message: "the runner exited: signal 9 — \"killed\"")
        job.images = [
            Job.Image(id: "\(job.id)-0", index: 0, seed: 1234, format: .webp, width: 512, height: 768, byteCount: 5),
            Job.Image(id: "\(job.id)-1", index: 1, seed: UInt64.max, format: .webp, width: 512, height: 768, byteCount: 3),
        ]
        job.webhookStatus = "delivered (200)"
        job.timings = GenerationTimings(queueSeconds: 0.1, loadSeconds: 1.0 / 3.0, engineSeconds: 2.5, totalSeconds: 2.933)
        job.runner = RunnerInfo(pid: 4242, device: "cuda:0", loadCount: 2)

        do {
            let store = try SQLiteJobStore(folder: temp.url)
            try await store.saveImage(job.images[0], data: Data("RIFF0".utf8))
            try await store.saveImage(job.images[1], data: Data([1, 2, 3]))
            try await store.save(job)
            #expect(try await store.job(id: job.id) == job)
        }

        // A new instance over the same folder, as after a restart.
        let reopened = try SQLiteJobStore(folder: temp.url)
        let loaded = try #require(try await reopened.job(id: job.id))
        #expect(loaded == job)
        #expect(loaded.createdAt == created)
        #expect(try await reopened.jobs(matching: JobFilter()) == [job])
        #expect(try await reopened.imageData(id: "\(job.id)-0") == Data("RIFF0".utf8))
        #expect(try await reopened.imageData(id: "\(job.id)-1") == Data([1, 2, 3]))
        #expect(try await reopened.job(id: Job.newID()) == nil)
    }

    @Test func saveReplacesTheStoredJob() async throws {
        let temp = TempFolder()
        defer { temp.remove() }
        let store = try SQLiteJobStore(folder: temp.url)
        var job = makeJob(state: .queued)
        try await store.save(job)
        #expect(try await store.unfinishedJobs().map(\.id) == [job.id])

        job.state = .succeeded
        job.step = job.totalSteps
        job.finishedAt = epoch.addingTimeInterval(10)
        job.images = [Job.Image(id: "\(job.id)-0", index: 0, seed: 1, format: .png, width: 512, height: 768, byteCount: 9)]
        try await store.save(job)

        #expect(try await store.job(id: job.id) == job)
        #expect(try await store.jobs(matching: JobFilter()).count == 1)
        #expect(try await store.jobs(matching: JobFilter(state: .queued)).isEmpty)
        #expect(try await store.jobs(matching: JobFilter(state: .succeeded)) == [job])
        #expect(try await store.unfinishedJobs().isEmpty)
    }

    @Test func listingFiltersOrdersAndPages() async throws {
        let temp = TempFolder()
        defer { temp.remove() }
        let store = try SQLiteJobStore(folder: temp.url)
        // Ten jobs a minute apart; models alternate, states cycle, the first four share a batch.
        let states: [Job.State] = [.queued, .running, .succeeded, .failed, .cancelled]
        var jobs: [Job] = []
        for index in 0..<10 {
            let job = makeJob(
                state: states[index % states.count], model: index.isMultiple(of: 2) ? "sd15" : "sdxl",
                batchID: index < 4 ? "batch_a" : nil, createdAt: epoch.addingTimeInterval(Double(index) * 60)
            )
            jobs.append(job)
        }
        for job in jobs.shuffled() { try await store.save(job) }
        let newestFirst = Array(jobs.reversed())

        #expect(try await store.jobs(matching: JobFilter()) == newestFirst)
        #expect(try await store.jobs(matching: JobFilter(state: .succeeded)).map(\.id) == [jobs[7].id, jobs[2].id])
        #expect(try await store.jobs(matching: JobFilter(model: "sdxl")).map(\.id) == [9, 7, 5, 3, 1].map { jobs[$0].id })
        #expect(try await store.jobs(matching: JobFilter(model: "nope")).isEmpty)
        #expect(try await store.jobs(matching: JobFilter(batchID: "batch_a")).map(\.id) == [3, 2, 1, 0].map { jobs[$0].id })
        // `since` is inclusive.
        let since = jobs[6].createdAt
        #expect(try await store.jobs(matching: JobFilter(since: since)).map(\.id) == [9, 8, 7, 6].map { jobs[$0].id })
        #expect(try await store.jobs(matching: JobFilter(since: since.addingTimeInterval(0.001))).map(\.id)
            == [9, 8, 7].map { jobs[$0].id })
        // Filters combine.
        #expect(try await store.jobs(matching: JobFilter(state: .running, model: "sdxl", batchID: "batch_a")).map(\.id)
            == [jobs[1].id])
        #expect(try await store.jobs(matching: JobFilter(state: .running, model: "sd15", batchID: "batch_a")).isEmpty)

        // Pages cover the listing once, in order.
        var paged: [Job] = []
        for offset in stride(from: 0, to: 12, by: 3) {
            let page = try await store.jobs(matching: JobFilter(limit: 3, offset: offset))
            #expect(page.count == (offset < 9 ? 3 : 1))
            paged += page
        }
        #expect(paged == newestFirst)
        #expect(try await store.jobs(matching: JobFilter(limit: 2, offset: 1)) == Array(newestFirst[1...2]))
        #expect(try await store.jobs(matching: JobFilter(limit: 5, offset: 20)).isEmpty)
        #expect(try await store.jobs(matching: JobFilter(limit: 0)).isEmpty)
    }

    @Test func equalCreationTimesOrderByID() async throws {
        let temp = TempFolder()
        defer { temp.remove() }
        let store = try SQLiteJobStore(folder: temp.url)
        let jobs = (0..<4).map { _ in makeJob(createdAt: epoch) }
        for job in jobs { try await store.save(job) }
        let ids = jobs.map(\.id).sorted()
        #expect(try await store.jobs(matching: JobFilter()).map(\.id) == ids)
        #expect(try await store.jobs(matching: JobFilter(limit: 2, offset: 2)).map(\.id) == Array(ids[2...]))
        #expect(try await store.unfinishedJobs().map(\.id) == ids)
    }

    @Test func unfinishedJobsAreQueuedOrRunningOldestFirst() async throws {
        let temp = TempFolder()
        defer { temp.remove() }
        let store = try SQLiteJobStore(folder: temp.url)
        let running = makeJob(state: .running, createdAt: epoch.addingTimeInterval(20))
        let queuedOld = makeJob(state: .queued, createdAt: epoch)
        let queuedNew = makeJob(state: .queued, createdAt: epoch.addingTimeInterval(40))
        let others = [
            makeJob(state: .succeeded, createdAt: epoch.addingTimeInterval(-10), finishedAt: epoch),
            makeJob(state: .failed, createdAt: epoch.addingTimeInterval(30), finishedAt: epoch.addingTimeInterval(31)),
            makeJob(state: .cancelled, createdAt: epoch.addingTimeInterval(50)),
        ]
        for job in [queuedNew, others[0], running, others[1], queuedOld, others[2]] { try await store.save(job) }

        #expect(try await store.unfinishedJobs() == [queuedOld, running, queuedNew])
        // They are still there for the next instance, as after a crash.
        let reopened = try SQLiteJobStore(folder: temp.url)
        #expect(try await reopened.unfinishedJobs().map(\.id) == [queuedOld, running, queuedNew].map(\.id))
    }

    @Test func imagesAreFilesNamedByIDAndFormat() async throws {
        let temp = TempFolder()
        defer { temp.remove() }
        let store = try SQLiteJobStore(folder: temp.url)
        let jobID = Job.newID()
        for (index, format) in ImageFormat.allCases.enumerated() {
            let image = Job.Image(id: "\(jobID)-\(index)", index: index, seed: 1, format: format, width: 64, height: 64, byteCount: 4)
            try await store.saveImage(image, data: Data("img\(index)".utf8))
        }
        #expect(try temp.imageFiles() == ["\(jobID)-0.png", "\(jobID)-1.jpeg", "\(jobID)-2.webp"])
        for index in 0..<3 {
            #expect(try await store.imageData(id: "\(jobID)-\(index)") == Data("img\(index)".utf8))
        }
        #expect(try await store.imageData(id: "\(jobID)-3") == nil)
        #expect(try await store.imageData(id: "\(Job.newID())-0") == nil)

        // Saving again replaces the bytes, and leaves no temporary file behind.
        let again = Job.Image(id: "\(jobID)-0", index: 0, seed: 1, format: .png, width: 64, height: 64, byteCount: 6)
        try await store.saveImage(again, data: Data("second".utf8))
        #expect(try await store.imageData(id: "\(jobID)-0") == Data("second".utf8))
        #expect(try temp.imageFiles().count == 3)
        // An empty image is still an image.
        let empty = Job.Image(id: "\(jobID)-9", index: 9, seed: 1, format: .png, width: 64, height: 64, byteCount: 0)
        try await store.saveImage(empty, data: Data())
        #expect(try await store.imageData(id: "\(jobID)-9") == Data())
    }

    @Test func imageIDValidation() {
        let hex = String(repeating: "0123456789abcdef", count: 2)
        for valid in ["job_\(hex)-0", "job_\(hex)-17", Job.newID() + "-3"] {
            #expect(SQLiteJobStore.isValidImageID(valid), "\(valid)")
        }
        let invalid = [
            "", "../x", "/etc/passwd", "job_abc/../../etc-0", "job_\(hex)", "job_\(hex)-", "job_\(hex)--1",
            "job_\(hex)-0/../../x", "job_\(hex)-0\n", "\njob_\(hex)-0", "job_\(hex)-0.png", "job_\(hex.uppercased())-0",
            "job_\(hex)0-0", "job_\(hex.dropLast())-0", "JOB_\(hex)-0", " job_\(hex)-0", "job_\(hex)-0 ",
            "job_\(hex)-٣", "job_\(hex)-0\u{301}", "job_\(hex.dropLast())a\u{301}-0", "job_\(hex)-1\0",
            "job_\(hex)-0/", "./job_\(hex)-0", "job_\(hex)-0/..",
        ]
        for id in invalid {
            #expect(!SQLiteJobStore.isValidImageID(id), "\(id.debugDescription)")
        }
    }

    @Test func traversalIDsReadNothingAndWriteNothing() async throws {
        let temp = TempFolder()
        defer { temp.remove() }
        let store = try SQLiteJobStore(folder: temp.url)
        // Files a traversal would reach: the store folder itself and its parent.
        let sentinel = temp.url.appendingPathComponent("x.png")
        try Data("secret".utf8).write(to: sentinel)
        let outside = temp.url.appendingPathComponent("outside", isDirectory: true)
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        let before = try FileManager.default.subpathsOfDirectory(atPath: temp.url.path).sorted()

        let ids = [
            "../x", "job_abc/../../etc-0", "/etc/passwd", "../outside/y", "../../x", "images/../x", "..", ".", "",
            "job_" + String(repeating: "a", count: 32) + "-0/../../x",
        ]
        for id in ids {
            #expect(try await store.imageData(id: id) == nil, "\(id)")
            for format in ImageFormat.allCases {
                let image = Job.Image(id: id, index: 0, seed: 0, format: format, width: 64, height: 64, byteCount: 4)
                await #expect(throws: (any Error).self, "\(id)") {
                    try await store.saveImage(image, data: Data("evil".utf8))
                }
            }
        }
        #expect(try Data(contentsOf: sentinel) == Data("secret".utf8))
        #expect(try FileManager.default.subpathsOfDirectory(atPath: temp.url.path).sorted() == before)
        #expect(try temp.imageFiles().isEmpty)
    }

    @Test func retentionByAgeRemovesOnlyOldFinishedJobs() async throws {
        let temp = TempFolder()
        defer { temp.remove() }
        let store = try SQLiteJobStore(folder: temp.url)
        let now = epoch.addingTimeInterval(100 * 86_400)
        let day: TimeInterval = 86_400
        let oldSucceeded = makeJob(state: .succeeded, createdAt: now - 10 * day, finishedAt: now - 9 * day, imageBytes: [10, 20])
        let oldFailed = makeJob(state: .failed, createdAt: now - 8 * day, finishedAt: now - 8 * day)
        // No finished_at: created_at decides.
        let oldCancelled = makeJob(state: .cancelled, createdAt: now - 30 * day)
        let recentSucceeded = makeJob(state: .succeeded, createdAt: now - 10 * day, finishedAt: now - 1 * day, imageBytes: [5])
        let recentCancelled = makeJob(state: .cancelled, createdAt: now - 2 * day)
        let oldQueued = makeJob(state: .queued, createdAt: now - 50 * day)
        let oldRunning = makeJob(state: .running, createdAt: now - 40 * day, imageBytes: [7])
        let all = [oldSucceeded, oldFailed, oldCancelled, recentSucceeded, recentCancelled, oldQueued, oldRunning]
        for job in all { try await persist(job, in: store) }
        // A stray image of the old job's batch that never made it into the job.
        let stray = Job.Image(id: "\(oldFailed.id)-0", index: 0, seed: 0, format: .jpeg, width: 64, height: 64, byteCount: 3)
        try await store.saveImage(stray, data: Data([1, 2, 3]))

        let deleted = try await store.enforceRetention(maxAge: 7 * day, maxBytes: .max, now: now)
        #expect(Set(deleted) == Set([oldSucceeded.id, oldFailed.id, oldCancelled.id]))
        #expect(deleted.count == 3)
        for job in [oldSucceeded, oldFailed, oldCancelled] {
            #expect(try await store.job(id: job.id) == nil)
        }
        for job in [recentSucceeded, recentCancelled, oldQueued, oldRunning] {
            #expect(try await store.job(id: job.id) == job)
        }
        #expect(try await store.imageData(id: "\(oldSucceeded.id)-0") == nil)
        #expect(try await store.imageData(id: "\(oldSucceeded.id)-1") == nil)
        #expect(try await store.imageData(id: "\(oldFailed.id)-0") == nil)
        #expect(try temp.imageFiles() == ["\(recentSucceeded.id)-0.png", "\(oldRunning.id)-0.png"].sorted())

        // Nothing more to do the second time.
        #expect(try await store.enforceRetention(maxAge: 7 * day, maxBytes: .max, now: now).isEmpty)
    }

    @Test func retentionBySizeRemovesOldestFinishedFirst() async throws {
        let temp = TempFolder()
        defer { temp.remove() }
        let store = try SQLiteJobStore(folder: temp.url)
        let now = epoch.addingTimeInterval(1_000)
        // Finished 500, 400, 300, 200, 100 seconds ago; created in another order.
        let finished = [
            makeJob(state: .succeeded, createdAt: epoch.addingTimeInterval(400), finishedAt: now - 300, imageBytes: [100]),
            makeJob(state: .failed, createdAt: epoch.addingTimeInterval(100), finishedAt: now - 100, imageBytes: [100]),
            makeJob(state: .succeeded, createdAt: epoch.addingTimeInterval(300), finishedAt: now - 500, imageBytes: [60, 40]),
            makeJob(state: .cancelled, createdAt: epoch.addingTimeInterval(200), finishedAt: now - 200, imageBytes: [100]),
            makeJob(state: .succeeded, createdAt: epoch.addingTimeInterval(0), finishedAt: now - 400, imageBytes: [100]),
        ]
        // Older than all of them, and big, but not final.
        let running = makeJob(state: .running, createdAt: epoch.addingTimeInterval(-1_000), imageBytes: [150])
        let queued = makeJob(state: .queued, createdAt: epoch.addingTimeInterval(-2_000))
        for job in finished + [running, queued] { try await persist(job, in: store) }
        // Total: 500 + 150 = 650.

        // Under the limit: nothing goes.
        #expect(try await store.enforceRetention(maxAge: 10_000, maxBytes: 650, now: now).isEmpty)

        // To fit 420, the three oldest finished go: 650 - 100 - 100 - 100 = 350.
        let deleted = try await store.enforceRetention(maxAge: 10_000, maxBytes: 420, now: now)
        #expect(deleted == [finished[2].id, finished[4].id, finished[0].id])
        #expect(try await store.jobs(matching: JobFilter()).map(\.id).sorted()
            == [finished[1].id, finished[3].id, running.id, queued.id].sorted())
        #expect(try temp.imageFiles() == ["\(finished[1].id)-0.png", "\(finished[3].id)-0.png", "\(running.id)-0.png"].sorted())
        #expect(try await store.imageData(id: "\(finished[2].id)-1") == nil)

        // Even a limit of zero leaves unfinished jobs and their images alone.
        let rest = try await store.enforceRetention(maxAge: 10_000, maxBytes: 0, now: now)
        #expect(rest == [finished[3].id, finished[1].id])
        #expect(try await store.jobs(matching: JobFilter()).map(\.id) == [running.id, queued.id])
        #expect(try temp.imageFiles() == ["\(running.id)-0.png"])
        #expect(try await store.imageData(id: "\(running.id)-0") == Data(repeating: 0, count: 150))
    }

    @Test func retentionAppliesAgeThenSize() async throws {
        let temp = TempFolder()
        defer { temp.remove() }
        let store = try SQLiteJobStore(folder: temp.url)
        let now = epoch.addingTimeInterval(10_000)
        let old = makeJob(state: .succeeded, createdAt: epoch, finishedAt: now - 5_000, imageBytes: [1])
        let middle = makeJob(state: .succeeded, createdAt: epoch, finishedAt: now - 50, imageBytes: [300])
        let young = makeJob(state: .succeeded, createdAt: epoch, finishedAt: now - 10, imageBytes: [300])
        for job in [young, old, middle] { try await persist(job, in: store) }

        let deleted = try await store.enforceRetention(maxAge: 1_000, maxBytes: 400, now: now)
        #expect(deleted == [old.id, middle.id])
        #expect(try await store.jobs(matching: JobFilter()) == [young])
    }
}
