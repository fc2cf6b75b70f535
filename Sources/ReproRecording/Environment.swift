import Foundation
import Glibc
import ReproKernels
import ReproStorage

/// Facts about the machine that can change a run's bits (BLAS kernel and threads, libm via glibc) or
/// help explain a difference (CPU, OS). Nothing time-dependent: two runs on one machine record the same.
struct RunEnvironment: Sendable {
    var openBLASCore = OpenBLAS.coreName
    var openBLASConfig = OpenBLAS.configuration
    var openBLASThreads = OpenBLAS.threadCount
    var cpuModel = RunEnvironment.readCPUModel()
    var operatingSystem = RunEnvironment.readOSName()
    var glibc = RunEnvironment.readGlibcVersion()
    var swiftVersion = RunEnvironment.compilerVersion
    var hdf5 = HDF5.libraryVersion

    init() {}

    /// "glibc 2.36", from confstr(_CS_GNU_LIBC_VERSION).
    static func readGlibcVersion() -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        guard confstr(Int32(_CS_GNU_LIBC_VERSION), &buffer, buffer.count) > 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func readCPUModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
              let colon = line.firstIndex(of: ":") else { return "unknown" }
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }

    static func readOSName() -> String {
        guard let text = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("PRETTY_NAME=") }) else { return "unknown" }
        return line.dropFirst("PRETTY_NAME=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }

    static var compilerVersion: String {
        #if compiler(>=6.4)
        return "≥ 6.4"
        #elseif compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #else
        return "< 6.2"
        #endif
    }
}
