import Foundation

/// A named set of request fields (`PUT /v1/presets/{name}`); a request that names it
/// gets these fields where it leaves them out.
public struct Preset: Codable, Sendable, Equatable {
    public var name: String
    public var request: GenerationRequest
    public var updatedAt: Date

    public init(name: String, request: GenerationRequest, updatedAt: Date = Date()) {
        self.name = name
        self.request = request
        self.updatedAt = updatedAt
    }

    static func isValidName(_ name: String) -> Bool {
        name.wholeMatch(of: /[A-Za-z0-9][A-Za-z0-9._-]{0,63}/) != nil
    }
}

/// Where defaults and presets persist.
public protocol ParameterStore: Sendable {
    func loadDefaults() async throws -> GenerationDefaults?
    func saveDefaults(_ defaults: GenerationDefaults) async throws
    func loadPresets() async throws -> [Preset]
    func savePreset(_ preset: Preset) async throws
    func deletePreset(named name: String) async throws
}

/// The server-wide defaults and the named presets, changed at run time and kept in the
/// store. Precedence: request fields, then the preset the request names, then defaults.
public actor GenerationParameters {
    private let store: ParameterStore
    private let limits: Limits
    public private(set) var defaults = GenerationDefaults()
    private var presets: [String: Preset] = [:]

    public init(store: ParameterStore, limits: Limits) {
        self.store = store
        self.limits = limits
    }

    /// Reads what the store kept; defaults that no longer pass the limits (the operator
    /// lowered one) fall back to the built-in ones.
    public func restore() async throws {
        if let saved = try await store.loadDefaults() {
            defaults = (try? GenerationDefaults().updated(with: saved.asRequest, limits: limits)) ?? GenerationDefaults()
        }
        presets = Dictionary(try await store.loadPresets().map { ($0.name, $0) }) { _, last in last }
    }

    public func updateDefaults(_ patch: GenerationRequest) async throws -> GenerationDefaults {
        let allowed = Set(GenerationDefaults.CodingKeys.allCases.map(\.rawValue))
        if let field = patch.setFields.first(where: { !allowed.contains($0) }) {
            throw EaselError(
                .unknownField, "'\(field)' has no server-wide default; these do: \(allowed.sorted().joined(separator: ", "))",
                field: field
            )
        }
        let updated = try defaults.updated(with: patch, limits: limits)
        try await store.saveDefaults(updated)
        defaults = updated
        return updated
    }

    public func resetDefaults() async throws -> GenerationDefaults {
        try await store.saveDefaults(GenerationDefaults())
        defaults = GenerationDefaults()
        return defaults
    }

    public func allPresets() -> [Preset] {
        presets.values.sorted { $0.name < $1.name }
    }

    public func preset(named name: String) throws -> Preset {
        guard let preset = presets[name] else {
            throw EaselError(
                .presetNotFound, "no preset '\(name)'; PUT /v1/presets/\(name) creates it (GET /v1/presets lists them)",
                field: "preset"
            )
        }
        return preset
    }

    /// Validates the preset with the rules requests follow, then keeps it.
    public func savePreset(named name: String, _ request: GenerationRequest) async throws -> Preset {
        guard Preset.isValidName(name) else {
            throw EaselError.invalid("name", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        }
        if request.preset != nil {
            throw EaselError.invalid("preset", "a preset cannot name another preset")
        }
        _ = try request.validated(modelID: request.model ?? "preset", limits: limits, defaults: defaults)
        let preset = Preset(name: name, request: request)
        try await store.savePreset(preset)
        presets[name] = preset
        return preset
    }

    public func deletePreset(named name: String) async throws {
        _ = try preset(named: name)
        try await store.deletePreset(named: name)
        presets[name] = nil
    }

    /// `request` with its preset's fields filled in, and the defaults to validate it with.
    public func resolve(_ request: GenerationRequest) throws -> (GenerationRequest, GenerationDefaults) {
        guard let name = request.preset else { return (request, defaults) }
        return (request.overlaid(on: try preset(named: name).request), defaults)
    }
}

extension GenerationRequest {
    /// The JSON names of the fields this request sets.
    var setFields: [String] {
        let data = (try? JSONEncoder().encode(self)) ?? Data()
        return (((try? JSONSerialization.jsonObject(with: data)) as? [String: Any]) ?? [:]).keys.sorted()
    }
}

extension GenerationDefaults {
    var asRequest: GenerationRequest {
        var request = GenerationRequest(
            negativePrompt: negativePrompt, width: width, height: height, steps: steps, cfgScale: cfgScale,
            sampler: sampler, outputFormat: outputFormat.rawValue, quality: quality
        )
        request.scheduler = scheduler
        return request
    }
}
