import NIOCore

/// Tells when the client of a connection goes away. Hummingbird allows half-closed
/// connections, so a client that hangs up shows as end of input, not as a closed
/// channel; this handler sits first in the pipeline to see that event.
final class ClientGoneHandler: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny

    private let onGone: @Sendable () -> Void

    init(onGone: @escaping @Sendable () -> Void) {
        self.onGone = onGone
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent { onGone() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        onGone()
        context.fireChannelInactive()
    }

    /// Runs `body` with `onGone` called if the client leaves meanwhile.
    static func watching<Value>(
        _ channel: any Channel, onGone: @escaping @Sendable () -> Void, _ body: () async throws -> Value
    ) async throws -> Value {
        let handler = ClientGoneHandler(onGone: onGone)
        try await channel.pipeline.addHandler(handler, position: .first).get()
        defer { channel.pipeline.removeHandler(handler, promise: nil) }
        return try await body()
    }
}
