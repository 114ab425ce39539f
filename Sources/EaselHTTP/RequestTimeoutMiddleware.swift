import EaselCore
import Hummingbird

/// Fails a request that takes longer than `--request-timeout` with 504
/// `request_timeout`. The handler's task is cancelled, which cancels a synchronous
/// generation's job. Only the time to the response head counts, so event streams and
/// WebSockets, which answer at once, are not cut off.
struct RequestTimeoutMiddleware<Context: RequestContext>: RouterMiddleware {
    let timeout: Duration
    let seconds: Double

    init(seconds: Double) {
        self.seconds = seconds
        self.timeout = .seconds(seconds)
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let seconds = self.seconds
        return try await withoutActuallyEscaping(next) { next in
            // The group waits for both tasks before it returns, so `next` never outlives this call.
            nonisolated(unsafe) let next = next
            return try await withThrowingTaskGroup(of: Response.self) { group in
                group.addTask { try await next(request, context) }
                group.addTask {
                    try await Task.sleep(for: .seconds(seconds))
                    throw EaselError(
                        .requestTimeout,
                        "the request took longer than \(AccessMiddleware<Context>.number(seconds)) s (--request-timeout) and was stopped; "
                            + "for long work, queue a job with POST /v1/jobs and follow it"
                    )
                }
                defer { group.cancelAll() }
                guard let first = try await group.next() else { throw CancellationError() }
                return first
            }
        }
    }
}
