// swift-tools-version: 6.0
import PackageDescription
#if os(Linux)
import Foundation
#endif

/// Instruction set of the numeric code. Building from source, repro targets the build machine as
/// `-march=native` would: on x86-64 with the Haswell feature set (AVX2, FMA, BMI1/2, F16C, MOVBE, LZCNT)
/// it compiles for `-target-cpu haswell`, which makes the SIMD loops 8 lanes wide and turns the
/// selects of ReLU/max-pool into blends (about 25% off a portable step), and runs the
/// portable kernels' explicit fused multiply-adds as instructions: without FMA hardware they are libm
/// calls, the same bits about 30× slower (measured: 9.2 vs 292 ms per step).
/// This changes speed, never bits: Swift does not contract a·b + c into an FMA on its own, and the
/// portable kernels' order of operations is written out in the source, so the goldens verify exactly
/// under both builds. REPRO_TARGET_CPU=baseline (or any LLVM CPU name) overrides the choice; the binary
/// then runs only on CPUs with that feature set, so build where you run. `repro bench` prints the choice.
let numericCodeSettings: [SwiftSetting] = {
    #if os(Linux) && arch(x86_64)
    // The define tells `repro bench` what it was built for.
    func target(_ cpu: String) -> [SwiftSetting] {
        [.unsafeFlags(["-target-cpu", cpu]), .define(cpu == "haswell" ? "REPRO_TARGET_HASWELL" : "REPRO_TARGET_OTHER")]
    }
    if let chosen = ProcessInfo.processInfo.environment["REPRO_TARGET_CPU"] {
        return chosen == "baseline" ? [] : target(chosen)
    }
    guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let flagsLine = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
    let flags = Set(flagsLine.split(separator: " ").map(String.init))
    let haswell = ["avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm", "popcnt"]
    return haswell.allSatisfy(flags.contains) ? target("haswell") : []
    #else
    return []
    #endif
}()

/// Every build configuration compiles optimized: repro's usage is `swift run repro …`, a debug build, and
/// numeric code at -Onone ran 100-200× slower (`verify Golden/mnist_bn.h5` > 15 min against 4.6 s).
/// Whole-module (-wmo), because without it no generic kernel is specialized across the files of its module;
/// -num-threads keeps one object file per source file, which the debug build's index store requires. What a
/// debug build still changes: debug information (-g), `assert` kept (-assert-config Debug), -enable-testing,
/// the DEBUG define, and no incremental compilation (the whole module rebuilds when one file changes).
/// Never bits: the same optimizer runs in both configurations and FMA is explicit in the source.
let optimizedInEveryConfiguration: [SwiftSetting] = [
    .unsafeFlags(["-wmo", "-O", "-num-threads", "2", "-assert-config", "Debug"], .when(configuration: .debug)),
]

// Module graph (one direction only; every target names every module it imports):
//   repro (CLI) → ReproVerify (compare, verify, BN checks, reports), ReproTensorBoard (event files) → ReproRecording (record schema codecs, writer, strict reader)
//     → ReproTraining (trainer) → ReproNN (layers, BN, SGD, RNG) → ReproKernels (GEMM, reductions, exp/log)
//   ReproData (MNIST) sits beside ReproTraining, ReproStorage (HDF5, checksummed files) beside ReproRecording;
//   ReproBytes (SHA-256 through libcrypto, gzip through zlib) under both.
// System libraries only: zlib and libcrypto come with libhdf5-dev (which depends on zlib1g-dev and libssl-dev).
let package = Package(
    name: "repro",
    products: [
        // An application, not a library: its modules are not an API, and its build settings (below) are
        // the root package's own.
        .executable(name: "repro", targets: ["repro"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .target(name: "ReproBytes", dependencies: ["CZlib", "CLibCrypto"], swiftSettings: optimizedInEveryConfiguration),
        .target(name: "ReproKernels", dependencies: [
            "CBLAS",
            .product(name: "RealModule", package: "swift-numerics"),
        ], swiftSettings: numericCodeSettings + optimizedInEveryConfiguration),
        .target(name: "ReproNN", dependencies: ["ReproKernels"], swiftSettings: numericCodeSettings + optimizedInEveryConfiguration),
        .target(name: "ReproData", dependencies: ["ReproKernels", "ReproNN", "ReproBytes", "ReproStorage"], swiftSettings: numericCodeSettings + optimizedInEveryConfiguration),
        .target(name: "ReproStorage", dependencies: ["CHDF5", "ReproBytes"],
                swiftSettings: [.swiftLanguageMode(.v5)] + optimizedInEveryConfiguration),  // libhdf5's type ids are C globals
        .target(name: "ReproTraining", dependencies: ["ReproKernels", "ReproNN", "ReproData"],
                swiftSettings: numericCodeSettings + optimizedInEveryConfiguration),
        .target(name: "ReproRecording", dependencies: ["ReproBytes", "ReproKernels", "ReproNN", "ReproData", "ReproStorage", "ReproTraining"],
                swiftSettings: numericCodeSettings + optimizedInEveryConfiguration),
        .target(name: "ReproVerify", dependencies: ["ReproKernels", "ReproNN", "ReproData", "ReproStorage", "ReproTraining",
                                                    "ReproRecording"],
                swiftSettings: numericCodeSettings + optimizedInEveryConfiguration),
        .target(name: "ReproTensorBoard", dependencies: ["ReproRecording", "ReproTraining"],
                swiftSettings: optimizedInEveryConfiguration),
        .executableTarget(name: "repro", dependencies: [
            "ReproKernels", "ReproNN", "ReproData", "ReproTraining", "ReproRecording", "ReproVerify", "ReproTensorBoard",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: numericCodeSettings + optimizedInEveryConfiguration),
        // Helpers only tests use: IDX writing, synthetic data, editing records into hostile ones.
        .target(name: "ReproTestSupport", dependencies: ["CHDF5", "CZlib", "ReproBytes", "ReproKernels", "ReproNN", "ReproData", "ReproStorage"],
                path: "Tests/ReproTestSupport", swiftSettings: [.swiftLanguageMode(.v5)] + optimizedInEveryConfiguration),
        // One test target per module it tests.
        .testTarget(name: "ReproKernelsTests", dependencies: ["ReproKernels", "ReproNN", "ReproTestSupport"],
                    swiftSettings: numericCodeSettings + optimizedInEveryConfiguration),
        .testTarget(name: "ReproNNTests", dependencies: ["ReproKernels", "ReproNN", "ReproTestSupport"],
                    swiftSettings: numericCodeSettings + optimizedInEveryConfiguration),
        .testTarget(name: "ReproDataTests", dependencies: ["ReproNN", "ReproData", "ReproTestSupport"],
                    swiftSettings: numericCodeSettings + optimizedInEveryConfiguration),
        .testTarget(name: "ReproRecordingTests", dependencies: ["ReproKernels", "ReproNN", "ReproData", "ReproStorage", "ReproTraining",
                                                                "ReproRecording", "ReproTestSupport"],
                    swiftSettings: numericCodeSettings + optimizedInEveryConfiguration),
        .testTarget(name: "ReproVerifyTests", dependencies: ["ReproKernels", "ReproNN", "ReproData", "ReproStorage", "ReproTraining",
                                                             "ReproRecording", "ReproVerify", "ReproTensorBoard", "ReproTestSupport"],
                    swiftSettings: numericCodeSettings + optimizedInEveryConfiguration),
    ]
)
