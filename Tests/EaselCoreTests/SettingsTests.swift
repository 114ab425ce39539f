import EaselCore
import Foundation
import Testing

/// Writes `json` to a fresh file in the temporary folder and returns its path.
private func writeConfig(_ json: String) throws -> String {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("easel-config-\(UUID().uuidString).json")
    try Data(json.utf8).write(to: url)
    return url.path
}

private func removeConfig(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

@Suite struct SettingsTests {
    @Test func defaults() throws {
        let settings = try Settings.parse([])
        #expect(settings.host == "127.0.0.1")
        #expect(settings.port == 7860)
        #expect(settings.modelsDir == "./models")
        #expect(settings.dataDir == "./.easel")
        #expect(settings.preload)
        #expect(settings.device == "auto")
        #expect(settings.maxSteps == 150)
        #expect(settings.config == nil)
    }

    @Test(arguments: [
        ["--port", "0"],
        ["--port", "70000"],
        ["--device", "tpu"],
        ["--max-steps", "0"],
        ["--max-batch", "-1"],
        ["--runner-threads", "-1"],
        ["--runner-load-timeout", "0"],
    ])
    func invalidValuesThrow(arguments: [String]) {
        #expect(throws: (any Error).self) { try Settings.parse(arguments) }
    }

    @Test func flagsAreParsed() throws {
        let settings = try Settings.parse(["--port", "8080", "--max-steps", "50", "--no-preload", "--device", "cpu"])
        #expect(settings.port == 8080)
        #expect(settings.maxSteps == 50)
        #expect(!settings.preload)
        #expect(settings.device == "cpu")
        #expect(settings.limits.maxSteps == 50)
    }
}

@Suite struct SettingsSourcesTests {
    @Test func listsEverySettingWithItsNames() throws {
        let maxSteps = try #require(SettingsSources.all.first { $0.flagName == "max-steps" })
        #expect(maxSteps.environmentName == "EASEL_MAX_STEPS")
        #expect(maxSteps.configKey == "max_steps")
        #expect(!maxSteps.isFlag)

        let preload = try #require(SettingsSources.all.first { $0.flagName == "preload" })
        #expect(preload.isFlag)
        #expect(preload.environmentName == "EASEL_PRELOAD")

        let names = Set(SettingsSources.all.map(\.flagName))
        #expect(names.isSuperset(of: ["config", "host", "port", "models-dir", "data-dir", "demo-model", "max-prompt-length"]))
    }

    @Test func environmentBecomesFlags() throws {
        let expanded = try SettingsSources.expand([], environment: ["EASEL_MAX_STEPS": "50", "UNRELATED": "x"])
        #expect(expanded == ["--max-steps=50"])
        #expect(try Settings.parse(expanded).maxSteps == 50)
    }

    @Test func negativeNumbersFromTheEnvironmentAreValues() throws {
        let expanded = try SettingsSources.expand([], environment: ["EASEL_KEEP_ALIVE": "-1"])
        #expect(try Settings.parse(expanded).keepAlive == -1)
    }

    @Test func configFileBecomesFlags() throws {
        let path = try writeConfig(#"{"port": 9000, "host": "0.0.0.0", "runner_heartbeat_timeout": 30.5}"#)
        defer { removeConfig(path) }
        let settings = try Settings.parse(SettingsSources.expand(["--config", path], environment: [:]))
        #expect(settings.port == 9000)
        #expect(settings.host == "0.0.0.0")
        #expect(settings.runnerHeartbeatTimeout == 30.5)
        #expect(settings.config == path)
    }

    @Test func configFileFromEnvironment() throws {
        let path = try writeConfig(#"{"max_batch": 3}"#)
        defer { removeConfig(path) }
        let settings = try Settings.parse(SettingsSources.expand([], environment: ["EASEL_CONFIG": path]))
        #expect(settings.maxBatch == 3)
    }

    @Test func precedenceIsFlagThenEnvironmentThenFileThenDefault() throws {
        let path = try writeConfig(#"{"port": 1111, "max_steps": 30, "max_batch": 2}"#)
        defer { removeConfig(path) }
        let expanded = try SettingsSources.expand(
            ["--config", path, "--port", "3333"],
            environment: ["EASEL_PORT": "2222", "EASEL_MAX_STEPS": "40"]
        )
        let settings = try Settings.parse(expanded)
        #expect(settings.port == 3333)  // flag beats environment and file
        #expect(settings.maxSteps == 40)  // environment beats file
        #expect(settings.maxBatch == 2)  // file beats default
        #expect(settings.maxWidth == 2048)  // default
    }

    @Test func flagWithEqualsSignCounts() throws {
        let expanded = try SettingsSources.expand(["--port=3333"], environment: ["EASEL_PORT": "2222"])
        #expect(try Settings.parse(expanded).port == 3333)
    }

    @Test(arguments: [
        ("false", "--no-preload"), ("0", "--no-preload"), ("off", "--no-preload"), ("NO", "--no-preload"),
        ("true", "--preload"), ("1", "--preload"), ("yes", "--preload"), ("On", "--preload"),
    ])
    func booleanFromEnvironment(text: String, flag: String) throws {
        let expanded = try SettingsSources.expand([], environment: ["EASEL_PRELOAD": text])
        #expect(expanded == [flag])
        #expect(try Settings.parse(expanded).preload == (flag == "--preload"))
    }

    @Test func booleanFromConfigFile() throws {
        let path = try writeConfig(#"{"preload": false, "demo_model": true}"#)
        defer { removeConfig(path) }
        let expanded = try SettingsSources.expand(["--config", path], environment: [:])
        #expect(expanded.contains("--no-preload"))
        let settings = try Settings.parse(expanded)
        #expect(!settings.preload)
        #expect(settings.demoModel)
    }

    @Test func negatedFlagBeatsEnvironment() throws {
        let expanded = try SettingsSources.expand(["--no-preload"], environment: ["EASEL_PRELOAD": "true"])
        #expect(expanded == ["--no-preload"])
    }

    @Test func invalidBooleanInEnvironmentThrows() throws {
        let error = try #require(throws: (any Error).self) {
            try SettingsSources.expand([], environment: ["EASEL_PRELOAD": "maybe"])
        }
        #expect(String(describing: error).contains("EASEL_PRELOAD"))
    }

    @Test func unknownConfigKeyThrowsNamingIt() throws {
        let path = try writeConfig(#"{"max_stpes": 5}"#)
        defer { removeConfig(path) }
        let error = try #require(throws: (any Error).self) {
            try SettingsSources.expand(["--config", path], environment: [:])
        }
        #expect(String(describing: error).contains("max_stpes"))
    }

    @Test(arguments: [#"[1, 2]"#, #""text""#, #"{"port": [1]}"#, "not json"])
    func configFileThatIsNotAnObjectThrows(json: String) throws {
        let path = try writeConfig(json)
        defer { removeConfig(path) }
        #expect(throws: (any Error).self) {
            try SettingsSources.expand(["--config", path], environment: [:])
        }
    }

    @Test func missingConfigFileThrows() {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("missing-\(UUID().uuidString).json").path
        #expect(throws: (any Error).self) {
            try SettingsSources.expand(["--config", path], environment: [:])
        }
    }
}
