import Hummingbird
import NIOCore

/// The request context of every route: Hummingbird's basics plus the connection, so a
/// long request can notice that its client went away.
struct EaselRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
