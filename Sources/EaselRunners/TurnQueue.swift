/// First come, first served: `take` waits until every earlier taker has called `end`.
actor TurnQueue {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    var isBusy: Bool { busy }

    func take() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    /// Takes the turn only if nobody holds it; says whether it did.
    func tryTake() -> Bool {
        guard !busy else { return false }
        busy = true
        return true
    }

    func end() {
        if waiters.isEmpty {
            busy = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}
