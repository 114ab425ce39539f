import EaselCore
import Testing

@Suite struct EaselErrorTests {
    @Test(arguments: EaselError.Code.allCases)
    func everyCodeMapsToAnErrorStatus(code: EaselError.Code) {
        #expect((400..<600).contains(code.httpStatus))
    }

    @Test(arguments: ["invalid_json", "invalid_field", "unknown_field", "body_too_large", "model_not_found", "not_found"])
    func clientErrorsAre4xx(rawValue: String) throws {
        let code = try #require(EaselError.Code(rawValue: rawValue))
        #expect((400..<500).contains(code.httpStatus))
    }

    @Test(arguments: ["runner_crashed", "runner_protocol_error", "runner_timeout", "engine_error", "internal_error"])
    func serverErrorsAre5xx(rawValue: String) throws {
        let code = try #require(EaselError.Code(rawValue: rawValue))
        #expect((500..<600).contains(code.httpStatus))
    }

    @Test func invalidNamesTheField() {
        let error = EaselError.invalid("steps", "must be between 1 and 150, not 0")
        #expect(error.code == .invalidField)
        #expect(error.field == "steps")
        #expect(error.message == "steps must be between 1 and 150, not 0")
        #expect(error.httpStatus == 422)
        #expect(error.description == "invalid_field (steps): steps must be between 1 and 150, not 0")
    }
}
