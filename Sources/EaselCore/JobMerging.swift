/// Dynamic batching: queued jobs that differ only in their prompts and seeds run in one
/// engine call, each job keeping its own id, seeds, events and result.
public enum JobMerging {
    /// The images one merged engine call holds at most when `--max-batch-size` is 0
    /// (automatic) and the model runs on CUDA, where a larger batch costs little more.
    public static let automaticLimit = 4

    /// The jobs that join `head` in its engine call: the queued jobs of `head`'s model
    /// right after it in queue order, while they can share the call and the images stay
    /// within `imageLimit`. The first job of the model that cannot join ends the run, so
    /// no job is overtaken by a later one of its model; jobs of other models do not
    /// compete and are passed over.
    public static func companions(of head: Job, in queue: [Job], imageLimit: Int) -> [Job] {
        var images = head.spec.batchSize
        var joining: [Job] = []
        for job in queue where job.spec.modelID == head.spec.modelID {
            guard job.spec.canShareEngineCall(with: head.spec), images + job.spec.batchSize <= imageLimit else { break }
            images += job.spec.batchSize
            joining.append(job)
        }
        return joining
    }
}

extension GenerationSpec {
    /// Whether this generation and `other` can run as one engine call: everything but the
    /// prompts and seeds is equal, and neither starts from an init image (each has its
    /// own, and img2img is not worth merging).
    public func canShareEngineCall(with other: GenerationSpec) -> Bool {
        initImage == nil && other.initImage == nil && sharedPart == other.sharedPart
    }

    /// This generation without what each job of a merged call keeps for itself; a field
    /// added to the spec later must be equal to merge unless it is cleared here.
    private var sharedPart: GenerationSpec {
        var shared = self
        shared.prompt = ""
        shared.negativePrompt = ""
        shared.seeds = []
        return shared
    }
}
