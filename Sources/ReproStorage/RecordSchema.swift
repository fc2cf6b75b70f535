import Crypto
import Foundation

/// The one definition of a repro record's layout (documented path by path in docs/SCHEMA.md).
/// Writers and readers use these names only; bump `version` on any change a reader must know about.
public enum RecordSchema {
    public static let formatName = "repro-record"
    public static let version: Int32 = 1

    // Root attributes
    public static let formatAttribute = "format"
    public static let versionAttribute = "schema_version"
    public static let createdAttribute = "created"
    public static let reproVersionAttribute = "repro_version"
    /// Written last; a reader treats a record without complete = 1 as unusable.
    public static let completeAttribute = "complete"

    public static let config = "/config"
    public static let environment = "/environment"
    public static let data = "/data"
    public static let trainIndices = "/data/split/train_indices"        // int32 [n_train]
    public static let validationIndices = "/data/split/val_indices"     // int32 [n_val]
    public static let epochOrder = "/data/epoch_order"                  // int32 [epochs_started, n_train]

    public static let steps = "/steps"
    public static let stepLoss = "/steps/loss"                          // float32 [S]
    public static let stepAccuracy = "/steps/accuracy"                  // float32 [S], percent
    /// float32 [S, C] under /steps/<bn layer>/: running_mean, running_std (after the step),
    /// batch_mean, batch_std (used in the step).
    public static func stepBatchNorm(_ layer: String, _ series: String) -> String { "/steps/\(layer)/\(series)" }
    public static let batchNormSeries = ["batch_mean", "batch_std", "running_mean", "running_std"]

    public static let epochs = "/epochs"                                // float64 [E] each
    public static let epochSeries = ["train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    /// float64 [3] each: train, val, test, in that order.
    public static func evaluation(_ when: String, _ metric: String) -> String { "/evaluation/\(when)/\(metric)" }

    /// Attributes `mode` ("exact" or "auto"), `absolute`, `relative`: the comparison policy verify applies
    /// to this golden (see ReproVerify's TolerancePolicy).
    public static let tolerance = "/tolerance"

    /// The BatchNorm verification at record time: `worst_error`, `bound` (float64 [R]; bound −1 for
    /// information rows), `passed` (int32 [R]); attribute `rows` lists "case | check" per row. Not compared
    /// by verify (which re-runs the checks): it documents the layer the record was made with.
    public static let batchNormChecks = "/checks/bn"

    public static let checkpoints = "/checkpoints"
    /// Zero-padded so HDF5's name order is step order.
    public static func checkpoint(step: Int) -> String { "/checkpoints/" + String(format: "%08d", step) }
    public static func checkpointTensor(step: Int, _ name: String) -> String { checkpoint(step: step) + "/model/" + name }
    public static func checkpointMomentum(step: Int, _ name: String) -> String { checkpoint(step: step) + "/optimizer/momentum_buffer/" + name }

    /// The user block (first 512 bytes, which libhdf5 skips) holds "repro-record sha256=<64 hex>\n": the
    /// SHA-256 of every byte after the user block, so a reader can check integrity before libhdf5 parses
    /// anything.
    public static let checksumPrefix = "repro-record sha256="
}

/// Writes a record to a temporary file beside the target and renames it into place only when complete,
/// so an interrupted run never leaves a partial file at the target path.
public final class RecordFile {
    public let targetPath: String
    public let temporaryPath: String
    public let writer: HDF5Writer

    public init(target: String) throws {
        let url = URL(fileURLWithPath: target)
        let folder = url.deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw StorageError(path: target, problem: "output folder \(folder) does not exist")
        }
        if FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory), isDirectory.boolValue {
            throw StorageError(path: target, problem: "is a directory")
        }
        guard FileManager.default.isWritableFile(atPath: folder) else {
            throw StorageError(path: target, problem: "output folder \(folder) is not writable")
        }
        targetPath = target
        temporaryPath = folder + "/." + url.lastPathComponent + ".partial-\(getpid())"
        writer = try HDF5Writer(creating: temporaryPath)
        try writer.setAttribute(RecordSchema.formatAttribute, RecordSchema.formatName)
        try writer.setAttribute(RecordSchema.versionAttribute, RecordSchema.version)
    }

    /// Marks the record complete, closes it, stamps the checksum into the user block and renames it to
    /// the target.
    public func commit() throws {
        try writer.setAttribute(RecordSchema.completeAttribute, Int32(1))
        try writer.close()
        try Self.stampChecksum(temporaryPath)
        guard rename(temporaryPath, targetPath) == 0 else {
            throw StorageError(path: targetPath, problem: "cannot move the finished record into place: \(String(cString: strerror(errno)))")
        }
    }

    /// Removes the temporary file (after a failure or an interrupt).
    public func abandon() {
        unlink(temporaryPath)
    }

    /// Writes the user-block checksum of a closed file (done by `commit`; public for tools that edit records).
    public static func stampChecksum(_ path: String) throws {
        guard let handle = FileHandle(forUpdatingAtPath: path) else { throw StorageError(path: path, problem: "cannot reopen to checksum") }
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(HDF5Writer.userBlockSize))
        let body = try handle.readToEnd() ?? Data()
        let hex = SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined()
        var block = Array((RecordSchema.checksumPrefix + hex + "\n").utf8)
        block += [UInt8](repeating: 0, count: HDF5Writer.userBlockSize - block.count)
        try handle.seek(toOffset: 0)
        try handle.write(contentsOf: block)
        try handle.synchronize()
    }

    /// Checks the user-block checksum without libhdf5. Returns nil when it matches, else the problem.
    public static func checksumProblem(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return "cannot read the file" }
        guard data.count > HDF5Writer.userBlockSize else { return "too short to be a record (\(data.count) bytes)" }
        let head = String(decoding: data.prefix(RecordSchema.checksumPrefix.count + 64), as: UTF8.self)
        guard head.hasPrefix(RecordSchema.checksumPrefix) else { return "no repro checksum in the user block: not a repro record" }
        let stored = String(head.dropFirst(RecordSchema.checksumPrefix.count))
        let actual = SHA256.hash(data: data.dropFirst(HDF5Writer.userBlockSize)).map { String(format: "%02x", $0) }.joined()
        return stored == actual ? nil : "checksum mismatch: the file is damaged or was modified"
    }
}
