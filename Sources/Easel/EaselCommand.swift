import ArgumentParser
import EaselCore
import EaselHTTP
import EaselRunners
import Foundation
import Hummingbird
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct EaselCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "easel",
        abstract: "A Stable Diffusion server: models load once, images come over HTTP.",
        discussion: """
            Every option of serve and setup can also be set in the environment as EASEL_<OPTION> \
            (EASEL_MAX_STEPS=50) or in the JSON file named by --config ({"max_steps": 50}). \
            A flag beats the environment, which beats the file.
            """,
        version: EaselVersion.current,
        subcommands: [Serve.self, Setup.self, Generate.self, MCPCommand.self]
    )

    /// Reads the environment and the config file into flags before parsing, so that one
    /// parser checks every source of settings.
    static func main() async {
        // A runner that dies mid-write must cost one request, not the server.
        signal(SIGPIPE, SIG_IGN)
        var arguments = Array(CommandLine.arguments.dropFirst())
        do {
            if let subcommand = arguments.first, [Serve._commandName, Setup._commandName, Generate._commandName].contains(subcommand) {
                // A one-shot command logs warnings only, unless a later --log-level (given
                // or from the environment) overrides this one: the last value wins.
                let quiet = subcommand == Generate._commandName ? ["--log-level", "warning"] : []
                arguments = [subcommand] + quiet
                    + (try SettingsSources.expand(Array(arguments.dropFirst()), environment: ProcessInfo.processInfo.environment))
            }
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

func makeLogger(_ settings: Settings) -> Logger {
    if settings.logFormat == "json" {
        LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
    }
    var logger = Logger(label: "easel")
    logger.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
    return logger
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start the HTTP server.")

    @OptionGroup var settings: Settings

    func run() async throws {
        let logger = makeLogger(settings)
        let gate = ShutdownGate()
        try await buildApplication(settings: settings, logger: logger, shutdownGate: gate).runService(drainingFirst: gate)
    }
}

struct Setup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the runner environment (and the demo model when the models folder is empty) ahead of time."
    )

    @OptionGroup var settings: Settings

    func run() async throws {
        let logger = makeLogger(settings)
        let environment = RunnerEnvironment(settings: settings, logger: logger)
        _ = try await environment.prepare()
        print("runner environment ready in \(settings.runnerVenvURL.path)")
    }
}
