import ArgumentParser
import Foundation

/// Turns the environment (`EASEL_MAX_STEPS=50`) and the JSON config file
/// (`{"max_steps": 50}`) into the command-line flags of ``Settings``, so that one parser
/// checks every source and the precedence is flag, environment, file, default.
public enum SettingsSources {
    public struct Setting: Sendable, Equatable {
        /// `max-steps`
        public let flagName: String
        public let isFlag: Bool

        public var configKey: String { flagName.replacingOccurrences(of: "-", with: "_") }
        public var environmentName: String { "EASEL_" + configKey.uppercased() }
    }

    /// The settings as declared in ``Settings``, read from its property wrappers.
    public static let all: [Setting] = Mirror(reflecting: Settings()).children.compactMap { child in
        guard let label = child.label, label.hasPrefix("_") else { return nil }
        return Setting(flagName: kebabCase(String(label.dropFirst())), isFlag: child.value is Flag<Bool>)
    }

    /// `arguments` (after the subcommand) extended with flags for every setting the
    /// arguments leave out but the environment or the config file sets.
    public static func expand(_ arguments: [String], environment: [String: String]) throws -> [String] {
        let given = Set(arguments.compactMap(flagName(in:)))
        var expanded = arguments
        let configPath = value(of: "config", in: arguments) ?? environment["EASEL_CONFIG"]
        let fileValues = try configPath.map(readConfigFile) ?? [:]
        for setting in all where !given.contains(setting.flagName) && !given.contains("no-" + setting.flagName) {
            if let text = environment[setting.environmentName] {
                expanded += try flags(for: setting, text: text, source: setting.environmentName)
            } else if let text = fileValues[setting.configKey] {
                expanded += try flags(for: setting, text: text, source: "\(setting.configKey) in \(configPath ?? "")")
            }
        }
        return expanded
    }

    static func readConfigFile(_ path: String) throws -> [String: String] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ValidationError("cannot read config file \(path): \(error.localizedDescription)")
        }
        guard let object = try? JSONDecoder().decode([String: ConfigValue].self, from: data) else {
            throw ValidationError("config file \(path) must hold one JSON object of strings, numbers and booleans")
        }
        let known = Set(all.map(\.configKey)).subtracting(["config"])
        var values: [String: String] = [:]
        for (key, value) in object {
            guard known.contains(key) else {
                throw ValidationError("unknown setting '\(key)' in \(path); known: \(known.sorted().joined(separator: ", "))")
            }
            values[key] = value.text
        }
        return values
    }

    /// A config file value, kept as the text a flag would carry.
    struct ConfigValue: Decodable {
        let text: String

        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let flag = try? container.decode(Bool.self) {
                text = flag ? "true" : "false"
            } else if let integer = try? container.decode(Int.self) {
                text = String(integer)
            } else if let number = try? container.decode(Double.self) {
                text = String(number)
            } else {
                text = try container.decode(String.self)
            }
        }
    }

    static func flags(for setting: Setting, text: String, source: String) throws -> [String] {
        // One argument, so that a negative number is not taken for a flag.
        guard setting.isFlag else { return ["--\(setting.flagName)=\(text)"] }
        switch text.lowercased() {
        case "1", "true", "yes", "on": return ["--" + setting.flagName]
        case "0", "false", "no", "off": return ["--no-" + setting.flagName]
        default: throw ValidationError("\(source) must be true or false, not '\(text)'")
        }
    }

    static func flagName(in argument: String) -> String? {
        guard argument.hasPrefix("--") else { return nil }
        return String(argument.dropFirst(2).prefix { $0 != "=" })
    }

    static func value(of flag: String, in arguments: [String]) -> String? {
        for (index, argument) in arguments.enumerated() {
            if argument == "--" + flag, index + 1 < arguments.count { return arguments[index + 1] }
            if argument.hasPrefix("--\(flag)=") { return String(argument.dropFirst(flag.count + 3)) }
        }
        return nil
    }

    static func kebabCase(_ camel: String) -> String {
        camel.reduce(into: "") { result, character in
            if character.isUppercase {
                result += "-" + character.lowercased()
            } else {
                result.append(character)
            }
        }
    }
}
