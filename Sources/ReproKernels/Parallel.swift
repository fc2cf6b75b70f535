import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Fork-join for work a caller splits into whole outputs (a layer's channels or images, a GEMM's columns).
/// Part i always covers the same items and writes only its own outputs, so the bits never depend on the
/// thread count or on scheduling; only the time does.
public enum Parallel {
    /// Calls `body` on up to `threads` contiguous ranges covering 0..<items, each of at least
    /// `minimumPerPart` items (small jobs are not worth handing to another thread). The calling thread runs
    /// parts too, and returns when all are done.
    @inlinable
    public static func forEach(_ items: Int, threads: Int, minimumPerPart: Int = 1,
                               _ body: @Sendable (Range<Int>) -> Void) {
        let parts = max(1, min(threads, items / max(1, minimumPerPart)))
        if parts == 1 {
            if items > 0 { body(0..<items) }
            return
        }
        withoutActuallyEscaping(body) { body in
            Workers.shared.perform(parts) { part in body((items * part / parts)..<(items * (part + 1) / parts)) }
        }
    }
}

/// The threads that help with `Parallel.forEach`, kept from call to call. A step makes a few dozen calls a few
/// hundred microseconds apart; waking a sleeping thread for each (libdispatch's concurrentPerform) cost ~10 µs a
/// call, measured. So a worker that has just helped spins on the job counter for a while (`spinNanoseconds`)
/// before it sleeps, and only when the machine has a core for each thread (on fewer cores a spinning worker
/// would take the time of the thread it waits for). Parts are claimed, not assigned: whoever is free takes the
/// next one, so a worker that is late (asleep, or its core taken by another process) leaves its part to the
/// caller instead of holding it up. Which thread runs a part never changes what the part computes. One job at
/// a time: a call made while another runs (a nested call, or tests running side by side) goes to libdispatch.
@usableFromInline
final class Workers: @unchecked Sendable {
    @usableFromInline static let shared = Workers()

    /// One call's parts: claimed through `next`, counted through `done`.
    private final class Job: @unchecked Sendable {
        let parts: Int
        let next = Atomic<Int>(0), done = Atomic<Int>(0)
        /// Cleared by the caller when every part is done (the closure must not outlive the call).
        var run: (@Sendable (Int) -> Void)?
        init(parts: Int, run: @escaping @Sendable (Int) -> Void) { self.parts = parts; self.run = run }

        /// Runs parts until none is left to claim.
        func help() {
            while true {
                let part = next.add(1, ordering: .acquiringAndReleasing).oldValue
                guard part < parts else { return }
                run!(part)
                done.add(1, ordering: .releasing)
            }
        }
    }

    /// Counts the jobs published; workers wait for it to change.
    private let published = Atomic<Int>(0)
    private let current = Mutex<Job?>(nil)
    /// Workers asleep (or about to be), each to be woken by one signal.
    private let sleepers = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)
    private let started = Mutex<Int>(0)
    private let cores = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    /// About 200 µs: longer than the gaps between a step's parallel calls, short enough not to hold a core
    /// between steps for long.
    private static let spinNanoseconds: UInt64 = 200_000

    @usableFromInline
    func perform(_ parts: Int, _ run: @escaping @Sendable (Int) -> Void) {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            DispatchQueue.concurrentPerform(iterations: parts, execute: run)
            return
        }
        startWorkers(parts - 1)
        let job = Job(parts: parts, run: run)
        current.withLock { $0 = job }
        published.add(1, ordering: .sequentiallyConsistent)
        // A worker counts itself asleep, then looks at `published` once more before it sleeps: either it sees
        // this job, or this load sees it counted (both sequentially consistent), and it gets a signal.
        for _ in 0..<sleepers.load(ordering: .sequentiallyConsistent) { wake.signal() }
        job.help()
        while job.done.load(ordering: .acquiring) < parts {}
        current.withLock { $0 = nil }
        job.run = nil
        busy.store(false, ordering: .releasing)
    }

    private func startWorkers(_ count: Int) {
        started.withLock { running in
            while running < count {
                // The worker starts from the jobs published so far: the next one is its first.
                let context = Unmanaged.passRetained(WorkerContext(workers: self, seen: published.load(ordering: .acquiring))).toOpaque()
                var thread = pthread_t()
                let created = pthread_create(&thread, nil, { context in
                    let worker = Unmanaged<WorkerContext>.fromOpaque(context!).takeRetainedValue()
                    worker.workers.loop(seen: worker.seen)
                    return nil
                }, context)
                precondition(created == 0, "cannot start a worker thread (pthread_create: \(created))")
                pthread_detach(thread)
                running += 1
            }
        }
    }

    private final class WorkerContext {
        let workers: Workers, seen: Int
        init(workers: Workers, seen: Int) { self.workers = workers; self.seen = seen }
    }

    /// Helps with every job published after `seen`.
    private func loop(seen: Int) {
        var seen = seen
        while true {
            var now = published.load(ordering: .acquiring)
            let spinUntil = DispatchTime.now().uptimeNanoseconds + Self.spinNanoseconds
            let spins = started.withLock { $0 } < cores
            while now == seen {
                if spins && DispatchTime.now().uptimeNanoseconds < spinUntil {
                    now = published.load(ordering: .acquiring)
                    continue
                }
                sleepers.add(1, ordering: .sequentiallyConsistent)
                if published.load(ordering: .sequentiallyConsistent) == seen { wake.wait() }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                now = published.load(ordering: .acquiring)
            }
            seen = now
            // The job may be over already (then nothing is left to claim) or not yet visible (nil).
            current.withLock { $0 }?.help()
        }
    }
}
