import ArgumentParser
import EaselCore
import EaselRunners
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `easel generate`: loads a model in a runner, generates, writes the images and exits.
/// No server: the runner is driven directly, so this is also the baseline the benchmark
/// compares a running server against.
struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a model, generate images into files and exit (no server).",
        discussion: """
            Requests are checked as the API checks them. The settings of serve apply too \
            (--models-dir, --runner-venv, --device, --runner-threads, limits). Only warnings \
            are logged unless --log-level says otherwise. Write a negative seed as --seed=-1.
            """
    )

    @Option(help: """
        Model id in --models-dir, or the path of a diffusers folder or a .safetensors/.ckpt file \
        (default: --default-model, else the first model in --models-dir).
        """)
    var model: String?

    @Option(help: "What the image shows.")
    var prompt = ""

    @Option(help: "What the image should not show.")
    var negativePrompt: String?

    @Option(help: "Width in pixels (default 512).")
    var width: Int?

    @Option(help: "Height in pixels (default 512).")
    var height: Int?

    @Option(help: "Denoising steps (default 20).")
    var steps: Int?

    @Option(help: "Classifier-free guidance scale (default 7).")
    var cfgScale: Double?

    @Option(help: "Sampler, as in the API (default Euler a).")
    var sampler: String?

    @Option(help: "Seed of the first image; -1 (the default) draws one. Image i uses seed + i.")
    var seed: Int64?

    @Option(help: "Images to generate (default 1).")
    var batchSize: Int?

    @Option(help: "Quality of JPEG and WebP files, 1 to 100 (default 90).")
    var quality: Int?

    @Option(name: [.short, .long], help: """
        File to write; its extension (png, jpg, jpeg, webp) picks the format. With --batch-size \
        above 1, image i goes to NAME-i.EXT.
        """)
    var output = "easel.png"

    @OptionGroup var settings: Settings

    func run() async throws {
        let display = ProgressDisplay(isTerminal: isatty(STDERR_FILENO) == 1)
        do {
            try await generate(display: display)
        } catch let error as EaselError {
            display.clear()
            FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
            throw ExitCode.failure
        }
    }

    private func generate(display: ProgressDisplay) async throws {
        let clock = ContinuousClock()
        let started = clock.now
        let entry = try modelEntry()
        let format = try outputFormat()
        let request = GenerationRequest(
            prompt: prompt, negativePrompt: negativePrompt, width: width, height: height, steps: steps,
            cfgScale: cfgScale, sampler: sampler, seed: seed, batchSize: batchSize, model: entry.id,
            outputFormat: format.rawValue, quality: quality
        )
        let spec = try request.validated(modelID: entry.id, limits: settings.limits)
        let files = try outputFiles(count: spec.batchSize)

        let logger = makeLogger(settings)
        let environment = RunnerEnvironment(settings: settings, logger: logger)
        display.show("setting up the runner environment")
        _ = try await environment.prepare()
        let setupSeconds = seconds(clock.now - started)

        let runner = StandaloneModel(entry: entry, settings: settings, environment: environment, logger: logger)
        let output: GenerationOutput
        let loadSeconds: Double
        do {
            display.show("loading \(entry.id)")
            loadSeconds = try await runner.load()
            display.show("generating")
            output = try await runner.generate(spec) { display.showSteps($0.step, of: $0.total) }
            await runner.close()
        } catch {
            await runner.close()
            throw error
        }
        display.clear()

        for (image, file) in zip(output.images, files) {
            do {
                try image.data.write(to: file, options: .atomic)
            } catch {
                throw EaselError.invalid("output", "cannot be written to \(file.path): \(error.localizedDescription)")
            }
            print("\(file.path): \(image.width)x\(image.height), seed \(image.seed)")
        }
        print(String(
            format: "seconds: setup %.2f, load %.2f, engine %.2f, total %.2f",
            setupSeconds, loadSeconds, output.engineSeconds, seconds(clock.now - started)
        ))
    }

    /// `--model` as an id in the models folder, or as a path to a model outside it.
    private func modelEntry() throws -> ModelEntry {
        guard let model else {
            let catalog = ModelCatalog(folder: settings.modelsURL)
            let listing = catalog.scan()
            guard let id = settings.defaultModel ?? listing.first(where: { $0.problem == nil })?.id else {
                throw EaselError(
                    .modelNotFound, "no model in \(settings.modelsURL.path); pass --model or put a checkpoint there", field: "model"
                )
            }
            return try catalog.resolve(id, in: listing)
        }
        let path = URL(fileURLWithPath: model).standardizedFileURL
        if model.contains("/"), FileManager.default.fileExists(atPath: path.path) {
            return try ModelCatalog(folder: path.deletingLastPathComponent()).resolve(path.lastPathComponent)
        }
        return try ModelCatalog(folder: settings.modelsURL).resolve(model)
    }

    private func outputFormat() throws -> ImageFormat {
        let fileExtension = URL(fileURLWithPath: output).pathExtension.lowercased()
        guard let format = ImageFormat(name: fileExtension == "jpg" ? "jpeg" : fileExtension) else {
            throw EaselError.invalid("output", "must end in .png, .jpg, .jpeg or .webp (the format), not '\(output)'")
        }
        return format
    }

    /// `--output` for one image; NAME-i.EXT for image i of several.
    private func outputFiles(count: Int) throws -> [URL] {
        let file = URL(fileURLWithPath: output).standardizedFileURL
        let folder = file.deletingLastPathComponent()
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder), isFolder.boolValue else {
            throw EaselError.invalid("output", "is in \(folder.path), which is not a folder")
        }
        guard count > 1 else { return [file] }
        let stem = file.deletingPathExtension().lastPathComponent
        return (0..<count).map { folder.appendingPathComponent("\(stem)-\($0).\(file.pathExtension)") }
    }
}

/// What `easel generate` is doing, on one line of stderr that redraws itself; silent
/// when stderr is not a terminal, so logs and pipes get only the final lines.
final class ProgressDisplay: Sendable {
    private let isTerminal: Bool
    private let started = ContinuousClock.now
    private static let barWidth = 30

    init(isTerminal: Bool) {
        self.isTerminal = isTerminal
    }

    func show(_ phase: String) {
        draw("\(phase)…")
    }

    func showSteps(_ step: Int, of total: Int) {
        let filled = total > 0 ? Self.barWidth * step / total : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: Self.barWidth - filled)
        draw("\(bar) step \(step)/\(total), \(String(format: "%.1f s", seconds(ContinuousClock.now - started)))")
    }

    func clear() {
        draw("")
    }

    /// Replaces the line: carriage return, then erase it.
    private func draw(_ text: String) {
        guard isTerminal else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[2K\(text)".utf8))
    }
}

private func seconds(_ duration: Duration) -> Double {
    let (whole, attoseconds) = duration.components
    return Double(whole) + Double(attoseconds) / 1e18
}
