import Foundation
import Testing
import ReproData
import ReproNN
import ReproRecording
import ReproStorage
import ReproTestSupport
import ReproTraining

/// A write that fails (a full disk, an I/O error; here the process's file size limit) ends `record` with
/// one error naming the target, nothing at the target and no temporary file left; a later record removes
/// the temporary files of processes that no longer exist.
@Suite(.serialized) struct WriteFailureTests {
    /// Sets the soft file size limit at the run's start, after the room check passed: libhdf5's writes
    /// then fail part-way, as on a disk that fills up during the run.
    final class LimitFileSize: TrainingObserver {
        let bytes: rlim_t
        var started = false
        init(bytes: rlim_t) { self.bytes = bytes }
        func runStarted(plan: RunPlan, split: DataSplit, layout: ModelLayout) throws {
            started = true
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit)
            limit.rlim_cur = bytes
            setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit)
        }
    }

    static func withFileSizeLimitRestored<R>(_ body: () throws -> R) rethrows -> R {
        var saved = rlimit()
        getrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved)
        defer { setrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved) }
        return try body()
    }

    static func config() -> RunConfig {
        var config = RunConfig()
        (config.batchSize, config.epochs) = (32, 2)
        return config
    }

    @Test func aWriteThatFailsPartWayEndsTheRunCleanly() throws {
        let tiny = try TinyMNIST()
        let path = tiny.directory + "/full.h5"
        let data = try MNIST.load(directory: tiny.directory)
        var temporary = ""
        let limit = LimitFileSize(bytes: 2048)
        let error = Self.withFileSizeLimitRestored {
            #expect(throws: StorageError.self) {
                try Recording.record(config: Self.config(), data: data, to: path, checks: placeholderChecks, observers: [limit],
                                     temporaryFileCreated: { temporary = $0 })
            }
        }
        #expect(limit.started)
        let description = "\(error.map { "\($0)" } ?? "")"
        #expect(description.hasPrefix(path + ": "), "names the target: \(description)")
        #expect(description.contains("nothing was written") && !description.contains("\n"), "\(description)")
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(!temporary.isEmpty && !FileManager.default.fileExists(atPath: temporary))
        // Control: without the limit the same run writes its record.
        try Recording.record(config: Self.config(), data: data, to: path, checks: placeholderChecks)
        #expect(try Record(path: path).plan.totalSteps == DataOrder.trainCount(of: 300) / 32 * Self.config().epochs)
    }

    /// A record that cannot fit is refused before anything is trained.
    @Test func aRecordThatCannotFitIsRefusedBeforeTraining() throws {
        let tiny = try TinyMNIST()
        let path = tiny.directory + "/small.h5"
        let data = try MNIST.load(directory: tiny.directory)
        let observer = LimitFileSize(bytes: rlim_t.max)
        Self.withFileSizeLimitRestored {
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit)
            limit.rlim_cur = 100_000
            setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit)
            do {
                try Recording.record(config: Self.config(), data: data, to: path, checks: placeholderChecks, observers: [observer])
                Issue.record("a record larger than the file size limit was not refused")
            } catch {
                #expect("\(error)".contains("the file size limit (ulimit -f) is 0.1 MB"), "\(error)")
            }
        }
        #expect(!observer.started, "training started")
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: tiny.directory).allSatisfy { !$0.contains(".partial-") })
    }

    /// `kill -9` leaves `.NAME.partial-PID`; the next record into the folder removes it, but never the
    /// temporary file of a process that is still running.
    @Test func abandonedTemporaryFilesAreRemoved() throws {
        let tiny = try TinyMNIST()
        var dead: Int32 = 4_000_000
        while kill(dead, 0) == 0 || errno != ESRCH { dead -= 1 }
        let abandoned = tiny.directory + "/.old.h5.partial-\(dead)"
        let live = tiny.directory + "/.other.h5.partial-\(getppid())"
        let unrelated = tiny.directory + "/.notes.partial-x"
        for file in [abandoned, live, unrelated] { _ = FileManager.default.createFile(atPath: file, contents: Data([1])) }
        let file = try RecordFile(target: tiny.directory + "/new.h5")
        file.abandon()
        #expect(!FileManager.default.fileExists(atPath: abandoned))
        #expect(FileManager.default.fileExists(atPath: live))
        #expect(FileManager.default.fileExists(atPath: unrelated))
    }
}
