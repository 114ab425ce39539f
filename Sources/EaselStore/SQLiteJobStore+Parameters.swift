import EaselCore
import Foundation
import GRDB

/// Defaults and presets live in the same database as the jobs, as JSON documents.
extension SQLiteJobStore: ParameterStore {
    private static let defaultsKey = "generation_defaults"

    public func loadDefaults() async throws -> GenerationDefaults? {
        let document = try await dbPool.read { db in
            try String.fetchOne(db, sql: "SELECT document FROM setting WHERE key = ?", arguments: [Self.defaultsKey])
        }
        return try document.map { try JSONDecoder().decode(GenerationDefaults.self, from: Data($0.utf8)) }
    }

    public func saveDefaults(_ defaults: GenerationDefaults) async throws {
        let document = String(decoding: try JSONEncoder().encode(defaults), as: UTF8.self)
        try await dbPool.write { db in
            try db.execute(
                sql: "INSERT INTO setting (key, document) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET document = excluded.document",
                arguments: [Self.defaultsKey, document]
            )
        }
    }

    public func loadPresets() async throws -> [Preset] {
        let documents = try await dbPool.read { db in
            try String.fetchAll(db, sql: "SELECT document FROM preset ORDER BY name")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try documents.map { try decoder.decode(Preset.self, from: Data($0.utf8)) }
    }

    public func savePreset(_ preset: Preset) async throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        let document = String(decoding: try encoder.encode(preset), as: UTF8.self)
        try await dbPool.write { db in
            try db.execute(
                sql: "INSERT INTO preset (name, document) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET document = excluded.document",
                arguments: [preset.name, document]
            )
        }
    }

    public func deletePreset(named name: String) async throws {
        try await dbPool.write { db in
            try db.execute(sql: "DELETE FROM preset WHERE name = ?", arguments: [name])
        }
    }
}
