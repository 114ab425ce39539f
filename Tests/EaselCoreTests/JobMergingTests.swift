import EaselCore
import Foundation
import Logging
import Testing

private func spec(
    prompt: String = "a fox", seeds: [UInt64] = [1], model: String = "m", width: Int = 64, steps: Int = 2,
    initImage: GenerationSpec.InitImage? = nil
) -> GenerationSpec {
    GenerationSpec(
        modelID: model, prompt: prompt, negativePrompt: "", width: width, height: 64, steps: steps, cfgScale: 7,
        sampler: "Euler", seeds: seeds, outputFormat: .png, quality: 90, initImage: initImage
    )
}

private func job(_ id: String, _ spec: GenerationSpec) -> Job {
    Job(id: id, priority: 0, spec: spec)
}

@Suite struct JobMergingRuleTests {
    @Test func onlyPromptsAndSeedsMayDiffer() {
        let base = spec()
        var otherPrompts = spec(prompt: "a lighthouse", seeds: [7, 8])
        otherPrompts.negativePrompt = "blurry"
        #expect(base.canShareEngineCall(with: otherPrompts))
        var changes: [GenerationSpec] = [spec(model: "n"), spec(width: 128), spec(steps: 3)]
        for change in [
            { (s: inout GenerationSpec) in s.cfgScale = 5 }, { $0.sampler = "Euler a" }, { $0.scheduler = "karras" },
            { $0.loras = [.init(name: "detail", weight: 1)] }, { $0.outputFormat = .jpeg }, { $0.quality = 80 },
            { $0.hires = .init(width: 128, height: 128, upscaler: "Latent", steps: 0, denoisingStrength: 0.7) },
        ] {
            var changed = base
            change(&changed)
            changes.append(changed)
        }
        for changed in changes {
            #expect(!base.canShareEngineCall(with: changed) && !changed.canShareEngineCall(with: base))
        }
    }

    @Test func img2imgNeverMerges() {
        let initImage = GenerationSpec.InitImage(image: Data([1]), denoisingStrength: 0.5, resizeMode: .resize)
        let withImage = spec(initImage: initImage)
        #expect(!withImage.canShareEngineCall(with: withImage))
        #expect(!spec().canShareEngineCall(with: withImage))
    }

    @Test func companionsFollowTheQueueUpToTheFirstJobThatCannotJoin() {
        let head = job("head", spec())
        let queue = [
            job("a", spec(prompt: "a")), job("other-model", spec(model: "n")), job("b", spec(prompt: "b", seeds: [5, 6])),
            job("wider", spec(width: 128)), job("after-wider", spec(prompt: "c")),
        ]
        #expect(JobMerging.companions(of: head, in: queue, imageLimit: 8).map(\.id) == ["a", "b"])
        // Within the image limit: head 1 + a 1 = 2; b's two images would make 4.
        #expect(JobMerging.companions(of: head, in: queue, imageLimit: 3).map(\.id) == ["a"])
        #expect(JobMerging.companions(of: head, in: queue, imageLimit: 1).isEmpty)
    }
}

// MARK: - The scheduler merging real jobs

/// Holds every engine call until the test releases it, and records the calls.
private actor GatedGenerator: ImageGenerator {
    private(set) var calls: [[String]] = []
    private var gates: [CheckedContinuation<Void, Never>] = []
    let limit: Int

    init(limit: Int) { self.limit = limit }

    func generate(
        _ specs: [GenerationSpec], previewEvery: Int, onProgress: @escaping @Sendable (Int, GenerationProgress) -> Void
    ) async throws -> [GenerationOutput] {
        calls.append(specs.map(\.prompt))
        for member in specs.indices { onProgress(member, GenerationProgress(step: 1, total: 1)) }
        await withCheckedContinuation { gates.append($0) }
        try Task.checkCancellation()
        return specs.map { spec in
            GenerationOutput(
                images: spec.seeds.map { GeneratedImage(seed: $0, format: .png, width: 64, height: 64, data: Data(spec.prompt.utf8)) },
                loadSeconds: 0, engineSeconds: 1, runner: RunnerInfo(pid: 1, device: "cuda", loadCount: 1)
            )
        }
    }

    func mergeLimit(for modelID: String) async -> Int { limit }

    func waitForCalls(_ count: Int) async {
        while calls.count < count || gates.isEmpty { await Task.yield() }
    }

    /// Lets call `number` return, once it is waiting.
    func releaseCall(_ number: Int) async {
        await waitForCalls(number)
        gates.removeFirst().resume()
    }
}

private actor MemoryStore: JobStore {
    private var jobs: [String: Job] = [:]
    private var images: [String: Data] = [:]

    func save(_ job: Job) { jobs[job.id] = job }
    func job(id: String) -> Job? { jobs[id] }
    func jobs(matching filter: JobFilter) -> [Job] { Array(jobs.values) }
    func unfinishedJobs() -> [Job] { [] }
    func saveImage(_ image: Job.Image, data: Data) { images[image.id] = data }
    func imageData(id: String) -> Data? { images[id] }
    func enforceRetention(maxAge: TimeInterval, maxBytes: Int64, now: Date) -> [String] { [] }
}

@Suite struct JobSchedulerMergingTests {
    private func scheduler(_ generator: GatedGenerator) -> JobScheduler {
        JobScheduler(
            store: MemoryStore(), generator: generator,
            configuration: .init(maxQueued: 10, previewEvery: 0, retentionMaxAge: 3600, retentionMaxBytes: 1 << 30),
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        )
    }

    @Test func jobsQueuedBehindABusyModelShareOneCallAndKeepTheirOwnResults() async throws {
        let generator = GatedGenerator(limit: 4)
        let scheduler = scheduler(generator)
        _ = try await scheduler.submit([job("first", spec(prompt: "first"))])
        await generator.waitForCalls(1)
        let merged = [job("b", spec(prompt: "b", seeds: [10])), job("c", spec(prompt: "c", seeds: [20, 21]))]
        let alone = job("d", spec(prompt: "d", steps: 3))
        _ = try await scheduler.submit(merged + [alone])
        let bStream = try await scheduler.events(jobID: "b")
        let following = Task {
            var kinds: [JobEvent.Kind] = []
            for await event in bStream { kinds.append(event.kind) }
            return kinds
        }
        for call in 1...3 { await generator.releaseCall(call) }
        for id in ["first", "b", "c", "d"] { _ = try await scheduler.finished(id: id) }
        #expect(await generator.calls == [["first"], ["b", "c"], ["d"]])
        let b = try await scheduler.snapshot(id: "b").job
        let c = try await scheduler.snapshot(id: "c").job
        #expect(b.state == .succeeded && c.state == .succeeded)
        #expect(b.images.map(\.seed) == [10] && c.images.map(\.seed) == [20, 21])
        #expect(c.images.map(\.id) == ["c-0", "c-1"])
        #expect(b.timings?.mergedJobs == 2 && c.timings?.mergedJobs == 2)
        #expect(try await scheduler.snapshot(id: "d").job.timings?.mergedJobs == 1)
        #expect(await following.value == [.queued, .started, .progress, .succeeded])
    }

    /// A scheduler whose second engine call, running now, merged jobs b and c.
    private func mergedCallOfBAndC() async throws -> (GatedGenerator, JobScheduler) {
        let generator = GatedGenerator(limit: 4)
        let scheduler = scheduler(generator)
        _ = try await scheduler.submit([job("first", spec(prompt: "first"))])
        await generator.waitForCalls(1)
        _ = try await scheduler.submit([job("b", spec(prompt: "b")), job("c", spec(prompt: "c"))])
        await generator.releaseCall(1)
        await generator.waitForCalls(2)
        #expect(await generator.calls.last == ["b", "c"])
        return (generator, scheduler)
    }

    @Test func cancellingOneMergedJobLeavesTheOthersTheirResults() async throws {
        let (generator, scheduler) = try await mergedCallOfBAndC()
        let cancelled = try await scheduler.cancel(id: "b")
        #expect(cancelled.job.state == .cancelled)
        await generator.releaseCall(2)
        let c = try await scheduler.finished(id: "c")
        #expect(c.state == .succeeded && c.images.count == 1 && c.timings?.mergedJobs == 2)
        #expect(try await scheduler.snapshot(id: "b").job.images.isEmpty)
    }

    @Test func cancellingEveryMergedJobStopsTheCall() async throws {
        let (generator, scheduler) = try await mergedCallOfBAndC()
        _ = try await scheduler.cancel(id: "b")
        _ = try await scheduler.cancel(id: "c")
        await generator.releaseCall(2)
        #expect(try await scheduler.finished(id: "c").state == .cancelled)
        #expect(try await scheduler.finished(id: "b").state == .cancelled)
    }
}
