import Foundation
import ReproBytes

/// Writes a record to a temporary file beside the target and renames it into place only when complete,
/// so an interrupted run never leaves a partial file at the target path.
public final class RecordFile {
    public let targetPath: String
    public let temporaryPath: String
    public let writer: HDF5Writer

    /// The user block (first 512 bytes, which libhdf5 skips) holds "repro-record sha256=<64 hex>\n": the
    /// SHA-256 of every byte after the user block, so a reader can check integrity before libhdf5 parses
    /// anything.
    public static let checksumPrefix = "repro-record sha256="

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
        Self.removeAbandonedFiles(in: folder)
        temporaryPath = folder + "/." + url.lastPathComponent + Self.partialMarker + "\(getpid())"
        writer = try HDF5Writer(creating: temporaryPath)
    }

    static let partialMarker = ".partial-"

    /// Removes the temporary files of records whose process no longer exists (`kill -9`, a power cut):
    /// `.NAME.partial-PID` in the folder, for a PID that names no process.
    static func removeAbandonedFiles(in folder: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix(".") {
            guard let marker = name.range(of: partialMarker, options: .backwards),
                  let pid = Int32(name[marker.upperBound...]), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(folder + "/" + name) }
        }
    }

    /// Refuses a record that cannot fit: `bytes` against the free space of the target's file system and
    /// the process's file size limit.
    public func checkRoom(bytes: Int) throws {
        var fs = statvfs()
        if statvfs(temporaryPath, &fs) == 0 {
            let free = Int(fs.f_bavail) * Int(fs.f_frsize)
            if free < bytes {
                throw StorageError(path: targetPath, problem: "not enough room: \(Self.megabytes(free)) free, the record needs up to \(Self.megabytes(bytes))")
            }
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max, Int(limit.rlim_cur) < bytes {
            throw StorageError(path: targetPath, problem: "the file size limit (ulimit -f) is \(Self.megabytes(Int(limit.rlim_cur))), the record needs up to \(Self.megabytes(bytes))")
        }
    }

    static func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }

    /// Closes the file, stamps the checksum into the user block and renames it to the target.
    /// `amend` (if any) gets the closed, checksummed temporary file to add to (`HDF5Writer(appendingTo:)`);
    /// the checksum is stamped again after it.
    public func commit(amending amend: ((String) throws -> Void)? = nil) throws {
        try writer.close()
        try Self.stampChecksum(temporaryPath)
        if let amend {
            try amend(temporaryPath)
            try Self.stampChecksum(temporaryPath)
        }
        guard rename(temporaryPath, targetPath) == 0 else {
            throw StorageError(path: targetPath, problem: "cannot move the finished record into place: \(String(cString: strerror(errno)))")
        }
    }

    /// Removes the temporary file (after a failure or an interrupt).
    public func abandon() {
        unlink(temporaryPath)
    }

    /// Removes the temporary file after `error`, and names the target in a failure of the file itself.
    public func abandon(after error: Error) -> Error {
        abandon()
        guard let failure = error as? StorageError, failure.path == temporaryPath else { return error }
        return StorageError(path: targetPath, problem: failure.problem + "; nothing was written")
    }

    /// Writes the user-block checksum of a closed file (done by `commit`; public for tools that edit records).
    public static func stampChecksum(_ path: String) throws {
        guard let handle = FileHandle(forUpdatingAtPath: path) else { throw StorageError(path: path, problem: "cannot reopen to checksum") }
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(HDF5Writer.userBlockSize))
        let body = try handle.readToEnd() ?? Data()
        let hex = SHA256.hex(body)
        var block = Array((Self.checksumPrefix + hex + "\n").utf8)
        block += [UInt8](repeating: 0, count: HDF5Writer.userBlockSize - block.count)
        try handle.seek(toOffset: 0)
        try handle.write(contentsOf: block)
        try handle.synchronize()
    }

    /// Checks the user-block checksum without libhdf5. Returns nil when it matches, else the problem.
    public static func checksumProblem(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return "cannot read the file" }
        guard data.count > HDF5Writer.userBlockSize else { return "too short to be a record (\(data.count) bytes)" }
        let head = String(decoding: data.prefix(Self.checksumPrefix.count + 64), as: UTF8.self)
        guard head.hasPrefix(Self.checksumPrefix) else { return "no repro checksum in the user block: not a repro record" }
        let stored = String(head.dropFirst(Self.checksumPrefix.count))
        let actual = SHA256.hex(data.dropFirst(HDF5Writer.userBlockSize))
        return stored == actual ? nil : "checksum mismatch: the file is damaged or was modified"
    }
}
