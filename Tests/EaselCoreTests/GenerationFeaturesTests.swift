import EaselCore
import Foundation
import Testing

private let limits = Limits(
    maxWidth: 1024, maxHeight: 1024, maxPixels: 1024 * 1024, maxSteps: 50, maxBatch: 4, maxPromptLength: 200
)
/// The eight bytes every PNG starts with, and a little more.
private let pngBase64 = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0]).base64EncodedString()

private func validate(_ body: String) throws -> GenerationSpec {
    try GenerationRequest.decode(from: Data(body.utf8)).validated(modelID: "m", limits: limits, randomSeed: { 1 })
}

private func fieldOfError(_ body: String) -> String? {
    do {
        _ = try validate(body)
        return nil
    } catch let error as EaselError {
        return error.field
    } catch {
        return "unexpected \(error)"
    }
}

@Suite struct GenerationFeaturesTests {
    @Test func loraTagsLeaveThePromptAndJoinTheLoras() throws {
        let spec = try validate(#"{"prompt": "a cat <lora:detail:0.6> on a mat <lora:style>", "loras": [{"name": "extra", "weight": -1}]}"#)
        #expect(spec.prompt == "a cat on a mat")
        #expect(spec.loras == [.init(name: "detail", weight: 0.6), .init(name: "style", weight: 1), .init(name: "extra", weight: -1)])
        #expect(spec.infotext(forImage: 0, version: "t").hasPrefix("a cat on a mat <lora:detail:0.6> <lora:style:1> <lora:extra:-1>\n"))
    }

    @Test func img2imgAndInpaintingFieldsAreChecked() throws {
        let spec = try validate(#"{"init_image": "data:image/png;base64,\#(pngBase64)", "mask": "\#(pngBase64)", "denoising_strength": 0.4, "resize_mode": "crop", "inpaint_full_res": true}"#)
        #expect(spec.initImage?.denoisingStrength == 0.4)
        #expect(spec.initImage?.resizeMode == .crop)
        #expect(spec.initImage?.mask?.onlyMasked == true)
        #expect(spec.initImage?.mask?.blur == 4)
        #expect(spec.initImage?.image.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))
        #expect(spec.infotext(forImage: 0, version: "t").contains("Denoising strength: 0.4, Mask blur: 4"))
    }

    @Test(arguments: [
        (#"{"mask": "\#(pngBase64)"}"#, "mask"),
        (#"{"denoising_strength": 0.5}"#, "denoising_strength"),
        (#"{"init_image": "not base64!"}"#, "init_image"),
        (#"{"init_image": "aGVsbG8gd29ybGQ="}"#, "init_image"),
        (#"{"init_image": "\#(pngBase64)", "denoising_strength": 1.5}"#, "denoising_strength"),
        (#"{"init_image": "\#(pngBase64)", "resize_mode": "zoom"}"#, "resize_mode"),
        (#"{"init_image": "\#(pngBase64)", "mask": "\#(pngBase64)", "mask_blur": 100}"#, "mask_blur"),
        (#"{"hires": {"scale": 8}}"#, "hires.scale"),
        (#"{"hires": {"width": 2048, "height": 2048}}"#, "hires.width"),
        (#"{"hires": {"upscaler": "ESRGAN"}}"#, "hires.upscaler"),
        (#"{"hires": {"denoising_strength": -1}}"#, "hires.denoising_strength"),
        (#"{"scheduler": "linear"}"#, "scheduler"),
        (#"{"loras": [{"name": "x", "weight": 9}]}"#, "loras[0].weight"),
        (#"{"prompt": "<lora:x:lots>"}"#, "prompt"),
    ])
    func badValuesNameTheirField(body: String, field: String) {
        #expect(fieldOfError(body) == field)
    }

    @Test func hiresScalesTheFirstPassToMultiplesOfEight() throws {
        let spec = try validate(#"{"width": 512, "height": 384, "hires": {"scale": 1.5, "upscaler": "lanczos"}}"#)
        #expect(spec.hires == .init(width: 768, height: 576, upscaler: "Lanczos", steps: 0, denoisingStrength: 0.7))
        #expect(spec.outputWidth == 768 && spec.outputHeight == 576)
        let sized = try validate(#"{"width": 512, "height": 384, "hires": {"width": 1024}}"#)
        #expect(sized.hires?.width == 1024 && sized.hires?.height == 768)
    }

    @Test func aPresetFillsOnlyWhatTheRequestLeavesOut() throws {
        let preset = try GenerationRequest.decode(from: Data(#"{"steps": 3, "sampler": "DDIM", "hires": {"scale": 2}}"#.utf8))
        let request = try GenerationRequest.decode(from: Data(#"{"prompt": "a", "steps": 9, "preset": "p"}"#.utf8))
        let merged = request.overlaid(on: preset)
        #expect(merged.steps == 9 && merged.sampler == "DDIM" && merged.prompt == "a" && merged.hires?.scale == 2)
    }

    @Test func defaultsUpdateWithTheRulesOfRequests() throws {
        let updated = try GenerationDefaults().updated(with: GenerationRequest(width: 768, steps: 30, sampler: "k_euler"), limits: limits)
        #expect(updated.width == 768 && updated.steps == 30 && updated.sampler == "Euler" && updated.height == 512)
        #expect(throws: EaselError.self) { try GenerationDefaults().updated(with: GenerationRequest(steps: 99), limits: limits) }
    }
}
