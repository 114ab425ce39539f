import Foundation

/// A model found in the models folder.
public struct ModelEntry: Sendable, Equatable, Codable {
    public enum Format: String, Sendable, Codable {
        case diffusers
        case singleFile = "single_file"
        /// A GGUF file, served by stable-diffusion.cpp.
        case gguf
    }

    /// The name requests use: the folder name, or the file name without its extension.
    public var id: String
    /// The file or folder name inside the models folder.
    public var fileName: String
    public var path: String
    public var format: Format
    /// `sd1`, `sd2`, `sdxl`; nil when the file cannot be read without an engine (`.ckpt`).
    public var architecture: String?
    public var sizeBytes: Int64
    /// A diffusers config folder beside a single-file checkpoint (`name.config/`), used
    /// instead of the shipped config for models of non-standard shape.
    public var configDir: String?
    /// Why the model cannot be served; nil when it can.
    public var problem: String?
    /// A separate VAE beside a single file (`name.vae.safetensors` or `name.vae.gguf`), which
    /// stable-diffusion.cpp loads with it: GGUF files of the UNet alone need one.
    public var vaePath: String?

    /// The engine that serves this model unless told otherwise: diffusers folders and GGUF
    /// files have one engine each; checkpoints get `checkpointEngine` (`--default-engine`).
    public func defaultEngine(checkpointEngine: EngineKind) -> EngineKind {
        switch format {
        case .diffusers: .diffusers
        case .gguf: .stableDiffusionCpp
        case .singleFile: checkpointEngine
        }
    }
}

/// Lists the models in one folder. Model ids resolve only against this listing, so no
/// request can name a path outside the folder.
public struct ModelCatalog: Sendable {
    public static let servedArchitectures: Set<String> = ["sd1", "sd2", "sdxl"]
    static let vaeSuffix = ".vae"
    public let folder: URL

    public init(folder: URL) {
        self.folder = folder
    }

    public func scan() -> [ModelEntry] {
        let fileManager = FileManager.default
        guard let names = try? fileManager.contentsOfDirectory(atPath: folder.path) else { return [] }
        var entries: [ModelEntry] = []
        for name in names.sorted() where !name.hasPrefix(".") {
            let url = folder.appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            guard fileManager.fileExists(atPath: url.path, isDirectory: &isDirectory) else { continue }
            let entry = isDirectory.boolValue ? diffusersEntry(url) : singleFileEntry(url)
            if let entry, !entries.contains(where: { $0.id == entry.id }) {
                entries.append(entry)
            }
        }
        return entries
    }

    /// The model with this id, or the error a client should see.
    public func resolve(_ id: String, in listing: [ModelEntry]? = nil) throws -> ModelEntry {
        let entries = listing ?? scan()
        guard let entry = entries.first(where: { $0.id == id || $0.fileName == id }) else {
            let known = entries.map(\.id).joined(separator: ", ")
            throw EaselError(
                .modelNotFound,
                "no model '\(id)' in the models folder; available: \(known.isEmpty ? "none" : known) (GET /v1/models lists them)",
                field: "model"
            )
        }
        if let problem = entry.problem {
            throw EaselError(.unsupportedModel, "model '\(entry.id)' cannot be served: \(problem)", field: "model")
        }
        return entry
    }

    private func diffusersEntry(_ url: URL) -> ModelEntry? {
        guard !url.lastPathComponent.hasSuffix(".config") else { return nil }
        let indexURL = url.appendingPathComponent("model_index.json")
        guard let data = try? Data(contentsOf: indexURL) else { return nil }
        var entry = ModelEntry(
            id: url.lastPathComponent, fileName: url.lastPathComponent, path: url.path, format: .diffusers,
            architecture: nil, sizeBytes: Self.folderSize(url), configDir: nil, problem: nil
        )
        let index = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        switch index?["_class_name"] as? String {
        case "StableDiffusionPipeline":
            let unetConfig = (try? Data(contentsOf: url.appendingPathComponent("unet/config.json")))
                .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            entry.architecture = (unetConfig?["cross_attention_dim"] as? Int) == 1024 ? "sd2" : "sd1"
        case "StableDiffusionXLPipeline":
            entry.architecture = "sdxl"
        case let other:
            entry.problem = "pipeline '\(other ?? "unknown")' is not a Stable Diffusion 1.x, 2.x or SDXL pipeline"
        }
        return entry
    }

    private func singleFileEntry(_ url: URL) -> ModelEntry? {
        let fileExtension = url.pathExtension.lowercased()
        guard ["safetensors", "ckpt", "gguf"].contains(fileExtension) else { return nil }
        let stem = url.deletingPathExtension().lastPathComponent
        // A model's separate VAE belongs to that model, and is no model of its own.
        guard !stem.hasSuffix(Self.vaeSuffix) else { return nil }
        let configURL = url.deletingPathExtension().appendingPathExtension("config")
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.int64Value ?? 0
        var entry = ModelEntry(
            id: stem, fileName: url.lastPathComponent, path: url.path, format: fileExtension == "gguf" ? .gguf : .singleFile,
            architecture: nil, sizeBytes: size,
            configDir: FileManager.default.fileExists(atPath: configURL.appendingPathComponent("model_index.json").path)
                ? configURL.path : nil,
            problem: nil
        )
        entry.vaePath = ["safetensors", "gguf"].map { url.deletingPathExtension().appendingPathExtension("vae.\($0)") }
            .first { FileManager.default.fileExists(atPath: $0.path) }?.path
        if fileExtension == "gguf" {
            do {
                try CheckpointInspector.checkGGUFHeader(url)
            } catch {
                entry.problem = "\(error)"
            }
        }
        guard fileExtension == "safetensors" else { return entry }
        do {
            let architecture = try CheckpointInspector.architecture(ofSafetensors: url)
            entry.architecture = architecture
            if !Self.servedArchitectures.contains(architecture) {
                entry.problem = "architecture '\(architecture)' is not served; SD 1.x, 2.x and SDXL models are"
            }
        } catch {
            entry.problem = "\(error)"
        }
        return entry
    }

    static func folderSize(_ url: URL) -> Int64 {
        guard let walker = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.fileSizeKey]) else { return 0 }
        var total: Int64 = 0
        for case let file as URL in walker {
            total += Int64((try? file.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0)
        }
        return total
    }
}

/// Reads a `.safetensors` header (8-byte little-endian length, then JSON naming every
/// tensor) and tells the architecture from the tensor names, without loading weights.
public enum CheckpointInspector {
    public struct Unreadable: Error, CustomStringConvertible {
        public let description: String
    }

    static let maxHeaderBytes = 100 * 1024 * 1024

    public static func architecture(ofSafetensors url: URL) throws -> String {
        try architecture(ofTensorNames: tensorNames(ofSafetensors: url))
    }

    public static func architecture(ofTensorNames names: [String]) throws -> String {
        func any(_ prefix: String) -> Bool { names.contains { $0.hasPrefix(prefix) } }
        if any("conditioner.embedders.") { return "sdxl" }
        guard any("model.diffusion_model.") else {
            throw Unreadable(description: "no Stable Diffusion UNet tensors (model.diffusion_model.*): not a full checkpoint (a LoRA, VAE or other file?)")
        }
        if any("cond_stage_model.model.") { return "sd2" }
        if any("cond_stage_model.transformer.") { return "sd1" }
        throw Unreadable(description: "UNet tensors without a known text encoder layout: not SD 1.x, 2.x or SDXL")
    }

    /// Checks the start of a GGUF file: the magic and a format version stable-diffusion.cpp
    /// reads (2 or 3). The engine's runner reads the rest of the header at load.
    public static func checkGGUFHeader(_ url: URL) throws {
        guard let handle = try? FileHandle(forReadingFrom: url) else {
            throw Unreadable(description: "cannot open \(url.lastPathComponent)")
        }
        defer { try? handle.close() }
        guard let start = try handle.read(upToCount: 8), start.count == 8, start.prefix(4) == Data("GGUF".utf8) else {
            throw Unreadable(description: "not a GGUF file (no GGUF magic at the start)")
        }
        let version = start.suffix(4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        guard (2...3).contains(version) else {
            throw Unreadable(description: "GGUF version \(version) is not supported (2 or 3 are)")
        }
    }

    public static func tensorNames(ofSafetensors url: URL) throws -> [String] {
        guard let handle = try? FileHandle(forReadingFrom: url) else {
            throw Unreadable(description: "cannot open \(url.lastPathComponent)")
        }
        defer { try? handle.close() }
        guard let lengthBytes = try handle.read(upToCount: 8), lengthBytes.count == 8 else {
            throw Unreadable(description: "file too short to be safetensors")
        }
        let length = lengthBytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard length > 1, length <= UInt64(maxHeaderBytes) else {
            throw Unreadable(description: "corrupt safetensors header (length \(length))")
        }
        guard let header = try handle.read(upToCount: Int(length)), header.count == Int(length),
            let object = try? JSONSerialization.jsonObject(with: header) as? [String: Any]
        else {
            throw Unreadable(description: "corrupt safetensors header (not JSON)")
        }
        return object.keys.filter { $0 != "__metadata__" }
    }
}

/// A LoRA file in the LoRA folder.
public struct LoraEntry: Sendable, Equatable, Codable {
    /// The name requests use: the file name without its extension.
    public var name: String
    public var fileName: String
    public var path: String
    public var sizeBytes: Int64
}

/// Lists the LoRA files (`.safetensors`) of one folder; names resolve only against
/// this listing, so no request can name a path outside it.
public struct LoraCatalog: Sendable {
    public let folder: URL

    public init(folder: URL) {
        self.folder = folder
    }

    public func scan() -> [LoraEntry] {
        let fileManager = FileManager.default
        guard let names = try? fileManager.contentsOfDirectory(atPath: folder.path) else { return [] }
        return names.sorted().compactMap { name in
            let url = folder.appendingPathComponent(name)
            guard !name.hasPrefix("."), url.pathExtension.lowercased() == "safetensors",
                let size = (try? fileManager.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.int64Value
            else { return nil }
            return LoraEntry(name: url.deletingPathExtension().lastPathComponent, fileName: name, path: url.path, sizeBytes: size)
        }
    }

    public func resolve(_ name: String, field: String) throws -> LoraEntry {
        let entries = scan()
        guard let entry = entries.first(where: { $0.name == name || $0.fileName == name }) else {
            let known = entries.map(\.name).joined(separator: ", ")
            throw EaselError(
                .loraNotFound,
                "no LoRA '\(name)' in the LoRA folder; available: \(known.isEmpty ? "none" : known) (GET /v1/loras lists them)",
                field: field
            )
        }
        return entry
    }

    /// The file of each LoRA, by name, for the runner.
    public func paths(of loras: [GenerationSpec.Lora]) throws -> [String: String] {
        try Dictionary(loras.map { ($0.name, try resolve($0.name, field: "loras").path) }) { first, _ in first }
    }
}
