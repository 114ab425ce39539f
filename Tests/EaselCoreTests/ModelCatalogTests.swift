import EaselCore
import Foundation
import Testing

/// A fresh, empty models folder in the temporary directory.
private struct ModelsFolder {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("easel-models-\(UUID().uuidString)")

    init() throws {
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    var catalog: ModelCatalog { ModelCatalog(folder: url) }

    func remove() {
        try? FileManager.default.removeItem(at: url)
    }

    func write(_ text: String, to path: String) throws {
        try write(Data(text.utf8), to: path)
    }

    func write(_ data: Data, to path: String) throws {
        let file = url.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: file)
    }

    /// A diffusers folder: model_index.json naming `pipeline`, plus a UNet config.
    func writeDiffusers(_ name: String, pipeline: String, crossAttentionDim: Int = 768) throws {
        try write(#"{"_class_name": "\#(pipeline)", "_diffusers_version": "0.30.0"}"#, to: "\(name)/model_index.json")
        try write(#"{"_class_name": "UNet2DConditionModel", "cross_attention_dim": \#(crossAttentionDim)}"#, to: "\(name)/unet/config.json")
    }

    /// A minimal `.safetensors` file: 8-byte little-endian header length, a JSON header
    /// naming one F32 scalar per tensor, then the tensors' bytes.
    func writeSafetensors(_ fileName: String, tensors: [String]) throws {
        var header: [String: Any] = ["__metadata__": ["format": "pt"]]
        for (index, name) in tensors.enumerated() {
            header[name] = ["dtype": "F32", "shape": [1], "data_offsets": [index * 4, index * 4 + 4]]
        }
        let json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        var file = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Data($0) }
        file.append(json)
        file.append(Data(repeating: 0, count: tensors.count * 4))
        try write(file, to: fileName)
    }
}

private let sd1Tensors = ["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.transformer.text_model.x"]

@Suite struct ModelCatalogTests {
    @Test(arguments: [(768, "sd1"), (1024, "sd2")])
    func diffusersStableDiffusion(crossAttentionDim: Int, architecture: String) throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.writeDiffusers("tiny", pipeline: "StableDiffusionPipeline", crossAttentionDim: crossAttentionDim)

        let entries = folder.catalog.scan()
        let entry = try #require(entries.first)
        #expect(entries.count == 1)
        #expect(entry.id == "tiny")
        #expect(entry.fileName == "tiny")
        #expect(entry.format == .diffusers)
        #expect(entry.architecture == architecture)
        #expect(entry.problem == nil)
        #expect(entry.sizeBytes > 0)
        #expect(try folder.catalog.resolve("tiny") == entry)
    }

    @Test func diffusersSDXLIsServed() throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.writeDiffusers("xl", pipeline: "StableDiffusionXLPipeline", crossAttentionDim: 2048)

        let entry = try #require(folder.catalog.scan().first)
        #expect(entry.architecture == "sdxl")
        #expect(entry.problem == nil)
        #expect(try folder.catalog.resolve("xl") == entry)
    }

    @Test func diffusersOtherPipelineHasAProblem() throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.writeDiffusers("flux", pipeline: "FluxPipeline")

        let entry = try #require(folder.catalog.scan().first)
        #expect(entry.problem?.contains("FluxPipeline") == true)
    }

    @Test func folderWithoutModelIndexIsIgnored() throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.write("{}", to: "not-a-model/unet/config.json")
        #expect(folder.catalog.scan().isEmpty)
    }

    @Test(arguments: [
        (sd1Tensors, "sd1"),
        (["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.model.transformer.x"], "sd2"),
    ])
    func safetensorsArchitecture(tensors: [String], architecture: String) throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.writeSafetensors("model.safetensors", tensors: tensors)

        let entry = try #require(folder.catalog.scan().first)
        #expect(entry.id == "model")
        #expect(entry.fileName == "model.safetensors")
        #expect(entry.format == .singleFile)
        #expect(entry.architecture == architecture)
        #expect(entry.problem == nil)
        #expect(entry.configDir == nil)
    }

    @Test func safetensorsSDXLIsServed() throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.writeSafetensors(
            "xl.safetensors", tensors: ["model.diffusion_model.x", "conditioner.embedders.0.transformer.y"]
        )

        let entry = try #require(folder.catalog.scan().first)
        #expect(entry.architecture == "sdxl")
        #expect(entry.problem == nil)
    }

    @Test func ggufIsListedForStableDiffusionCpp() throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try Data("GGUF\u{3}\0\0\0".utf8).write(to: folder.url.appendingPathComponent("q.gguf"))
        try Data("GGUF\0\0\0\0".utf8).write(to: folder.url.appendingPathComponent("r.gguf"))
        try Data("GGML".utf8).write(to: folder.url.appendingPathComponent("s.gguf"))

        let entries = folder.catalog.scan()
        let entry = try #require(entries.first)
        #expect(entry.format == .gguf && entry.defaultEngine(checkpointEngine: .diffusers) == .stableDiffusionCpp)
        #expect(entry.problem == nil)
        #expect(entries.dropFirst().map { $0.problem?.contains("GGUF") } == [true, true])
    }

    @Test func aSeparateVAEBelongsToItsModel() throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try Data("GGUF\u{3}\0\0\0".utf8).write(to: folder.url.appendingPathComponent("unet.gguf"))
        try Data("GGUF\u{3}\0\0\0".utf8).write(to: folder.url.appendingPathComponent("unet.vae.gguf"))

        let entries = folder.catalog.scan()
        #expect(entries.map(\.id) == ["unet"])
        #expect(entries.first?.vaePath == folder.url.appendingPathComponent("unet.vae.gguf").path)
    }

    @Test func checkpointsGetTheDefaultEngineAndLoadOptionsAreChecked() throws {
        let models = try ModelsFolder()
        defer { models.remove() }
        try models.writeSafetensors("c.safetensors", tensors: ["model.diffusion_model.x", "cond_stage_model.transformer.y"])
        let checkpoint = try #require(models.catalog.scan().first)
        var folder = checkpoint
        folder.format = .diffusers
        #expect(checkpoint.defaultEngine(checkpointEngine: .stableDiffusionCpp) == .stableDiffusionCpp)
        #expect(folder.defaultEngine(checkpointEngine: .stableDiffusionCpp) == .diffusers)
        #expect(try LoadOptions(engine: .stableDiffusionCpp, weightType: "q8_0").checked(for: checkpoint).weightType == "q8_0")
        #expect(throws: EaselError.self) { try LoadOptions(engine: .stableDiffusionCpp).checked(for: folder) }
        #expect(throws: EaselError.self) { try LoadOptions(engine: .diffusers, weightType: "q4_0").checked(for: checkpoint) }
        #expect(throws: EaselError.self) { try EngineKind.named("onnx", field: "engine") }
    }

    @Test func loraHasAProblem() throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.writeSafetensors(
            "lora.safetensors", tensors: ["lora_unet_down_blocks_0.alpha", "lora_te_text_model_encoder.lora_up.weight"]
        )

        let entry = try #require(folder.catalog.scan().first)
        #expect(entry.architecture == nil)
        #expect(entry.problem?.contains("model.diffusion_model") == true)
    }

    @Test(arguments: [
        ("random", Data((0..<256).map { _ in UInt8.random(in: 0...255) })),
        ("short", Data([1, 2, 3])),
        ("header-not-json", Data([5, 0, 0, 0, 0, 0, 0, 0]) + Data("hello".utf8)),
        ("header-cut-short", Data([0, 1, 0, 0, 0, 0, 0, 0]) + Data("{}".utf8)),
    ])
    func corruptFileHasAProblem(name: String, bytes: Data) throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.write(bytes, to: "\(name).safetensors")
        try folder.writeSafetensors("good.safetensors", tensors: sd1Tensors)

        let entries = folder.catalog.scan()
        #expect(entries.map(\.id) == ["good", name])
        let corrupt = try #require(entries.first { $0.id == name })
        #expect(corrupt.problem != nil)
        #expect(corrupt.architecture == nil)
        #expect(try folder.catalog.resolve("good").architecture == "sd1")
    }

    @Test func ckptIsListedWithoutArchitecture() throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.write(Data([0x50, 0x4B, 3, 4]), to: "old.ckpt")

        let entry = try #require(folder.catalog.scan().first)
        #expect(entry.id == "old")
        #expect(entry.format == .singleFile)
        #expect(entry.architecture == nil)
        #expect(entry.problem == nil)
    }

    @Test func otherFilesAreIgnored() throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.write("notes", to: "README.txt")
        try folder.write("{}", to: "model.json")
        try folder.writeSafetensors(".hidden.safetensors", tensors: sd1Tensors)
        #expect(folder.catalog.scan().isEmpty)
    }

    @Test func configFolderBesideSingleFile() throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.writeSafetensors("tiny.safetensors", tensors: sd1Tensors)
        try folder.write(#"{"_class_name": "StableDiffusionPipeline"}"#, to: "tiny.config/model_index.json")

        let entries = folder.catalog.scan()
        #expect(entries.map(\.id) == ["tiny"])
        let configDir = try #require(entries.first?.configDir)
        #expect(configDir == folder.url.appendingPathComponent("tiny.config").path)
    }

    @Test func emptyConfigFolderIsNotUsed() throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.writeSafetensors("tiny.safetensors", tensors: sd1Tensors)
        try FileManager.default.createDirectory(
            at: folder.url.appendingPathComponent("tiny.config"), withIntermediateDirectories: true
        )
        #expect(folder.catalog.scan().first?.configDir == nil)
    }

    @Test(arguments: ["../etc", "nope", "", "..", "/etc/passwd", "model/../model"])
    func unknownIdsAreNotFound(id: String) throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.writeSafetensors("model.safetensors", tensors: sd1Tensors)

        let error = try #require(throws: EaselError.self) { try folder.catalog.resolve(id) }
        #expect(error.code == .modelNotFound)
        #expect(error.field == "model")
        #expect(error.httpStatus == 404)
        #expect(error.message.contains("model"))  // lists what is available
    }

    @Test func resolveAcceptsTheFileName() throws {
        let folder = try ModelsFolder()
        defer { folder.remove() }
        try folder.writeSafetensors("model.safetensors", tensors: sd1Tensors)

        #expect(try folder.catalog.resolve("model.safetensors").id == "model")
        #expect(try folder.catalog.resolve("model").fileName == "model.safetensors")
    }

    @Test func missingFolderListsNothing() {
        let catalog = ModelCatalog(folder: FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString))
        #expect(catalog.scan().isEmpty)
        #expect(throws: EaselError.self) { try catalog.resolve("anything") }
    }
}
