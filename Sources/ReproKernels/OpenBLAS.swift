import CBLAS

/// What OpenBLAS says about itself. Its results depend on the CPU kernel it picked at load time
/// (OPENBLAS_CORETYPE overrides that) and on its thread count, so both belong in every record.
public enum OpenBLAS {
    /// Pins the thread count. OpenBLAS partitions a GEMM by thread count, so the bits change with it.
    public static func setThreadCount(_ n: Int) {
        openblas_set_num_threads(Int32(n))
    }

    public static var threadCount: Int { Int(openblas_get_num_threads()) }

    /// The CPU kernel in use, e.g. "Haswell" or "SkylakeX".
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p).trimmingCharacters(in: " ")
    }

    /// The build configuration string, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64".
    public static var configuration: String {
        guard let p = openblas_get_config() else { return "unknown" }
        return String(cString: p).trimmingCharacters(in: " ")
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}
