import EaselCore
import Foundation
import Testing

@testable import EaselHTTP

@Suite struct APIKeyTests {
    @Test func matchesOnlyTheStoredKeysAndNamesThemByHash() {
        let keys = APIKeys(["first-key", "second-key"])
        let first = keys.match("first-key")
        #expect(first != nil && first!.hasPrefix("key_") && first!.count == 12)
        #expect(keys.match("second-key") != nil && keys.match("second-key") != first)
        #expect(keys.match("first-keyx") == nil)
        #expect(keys.match("") == nil)
        #expect(!first!.contains("first"))
    }

    @Test func bearerAndBasicCredentials() {
        #expect(APIKeys.credentials(in: "Bearer abc") == ["abc"])
        #expect(APIKeys.credentials(in: "bearer  abc ") == ["abc"])
        let basic = Data("user:the-key".utf8).base64EncodedString()
        #expect(APIKeys.credentials(in: "Basic \(basic)") == ["the-key"])
        let userOnly = Data("the-key:".utf8).base64EncodedString()
        #expect(APIKeys.credentials(in: "Basic \(userOnly)") == ["the-key"])
        #expect(APIKeys.credentials(in: "Basic !!!") == [])
        #expect(APIKeys.credentials(in: "Digest abc") == [])
        #expect(APIKeys.credentials(in: nil) == [])
    }

    @Test func keysComeFromFlagsAndTheFile() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("easel-keys-\(UUID().uuidString)")
        try Data("# comment\n\n  from-file  \nsecond\n".utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let settings = try Settings.parse(["--api-key", "flag-key", "--api-key-file", url.path])
        let keys = try APIKeys.load(settings)
        #expect(keys.count == 3)
        #expect(keys.match("from-file") != nil && keys.match("second") != nil && keys.match("flag-key") != nil)
        #expect(keys.match("# comment") == nil)
    }
}

@Suite struct RateLimiterTests {
    @Test func burstThenTheRate() {
        let limiter = RateLimiter(perMinute: 60, burst: 3)
        let start = ContinuousClock.now
        #expect((0..<3).allSatisfy { _ in limiter.take("a", now: start) == nil })
        let wait = limiter.take("a", now: start)
        #expect(wait != nil && wait! > 0.9 && wait! <= 1.0)
        #expect(limiter.take("b", now: start) == nil)
        #expect(limiter.take("a", now: start + .seconds(1.01)) == nil)
        #expect(limiter.take("a", now: start + .seconds(1.02)) != nil)
    }
}

@Suite struct RequestIDTests {
    @Test func acceptsSensibleIDsOnly() {
        #expect(RequestIDMiddleware<EaselRequestContext>.acceptable("abc-123") == "abc-123")
        #expect(RequestIDMiddleware<EaselRequestContext>.acceptable("with space") == nil)
        #expect(RequestIDMiddleware<EaselRequestContext>.acceptable(String(repeating: "a", count: 129)) == nil)
        #expect(RequestIDMiddleware<EaselRequestContext>.acceptable("") == nil)
        #expect(RequestIDMiddleware<EaselRequestContext>.newID().hasPrefix("req_"))
    }
}

@Suite struct OperationsSettingsTests {
    @Test(arguments: [
        ["--cors-origin", "*", "--cors-allow-credentials"],
        ["--cors-origin", "app.example.com"],
        ["--cors-origin", "https://app.example.com/path"],
        ["--rate-limit", "-1"],
        ["--request-timeout", "-5"],
        ["--runner-crash-retries", "4"],
        ["--log-format", "xml"],
    ])
    func invalidValuesThrow(arguments: [String]) {
        #expect(throws: (any Error).self) { try Settings.parse(arguments) }
    }

    @Test func corsOriginsSplitOnCommas() throws {
        let settings = try Settings.parse(["--cors-origin", "https://a.example, http://b.example:8080", "--cors-origin", "https://c.example"])
        #expect(settings.corsOrigins == ["https://a.example", "http://b.example:8080", "https://c.example"])
    }
}
