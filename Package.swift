// swift-tools-version: 6.0
import PackageDescription
#if os(Linux)
import Foundation
#endif

/// Instruction set of the numeric code. Building from source, repro targets the build machine as
/// `-march=native` would: on x86-64 with the Haswell feature set (AVX2, FMA, BMI1/2, F16C, MOVBE, LZCNT)
/// it compiles for `-target-cpu haswell`, which makes the SIMD loops 8 lanes wide and turns the
/// selects of ReLU/max-pool into blends (measured: portable step 33 → 25 ms on 2 threads), and runs the
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


// Module graph (one direction only):
//   repro (CLI) → ReproVerify (compare, verify, BN checks) → ReproTraining (trainer, recorder) → ReproNN (layers, BN, SGD, RNG) → ReproKernels (GEMM, reductions, exp/log)
//   ReproData (MNIST) and ReproStorage (HDF5 schema) sit beside ReproTraining; neither knows about training.
let package = Package(
    name: "repro",
    products: [
        .executable(name: "repro", targets: ["repro"]),
        .library(name: "ReproNN", targets: ["ReproNN"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .target(name: "ReproKernels", dependencies: [
            "CBLAS",
            .product(name: "RealModule", package: "swift-numerics"),
        ], swiftSettings: numericCodeSettings),
        .target(name: "ReproNN", dependencies: ["ReproKernels"], swiftSettings: numericCodeSettings),
        .target(name: "ReproData", dependencies: [
            "ReproNN",
            .product(name: "CompressNIO", package: "compress-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: numericCodeSettings),
        .target(name: "ReproStorage", dependencies: ["CHDF5",
            .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: [.swiftLanguageMode(.v5)] + numericCodeSettings),  // libhdf5's type ids are C globals
        .target(name: "ReproTraining", dependencies: ["ReproNN", "ReproData", "ReproStorage"],
                swiftSettings: numericCodeSettings),
        .target(name: "ReproVerify", dependencies: ["ReproTraining"], swiftSettings: numericCodeSettings),
        .executableTarget(name: "repro", dependencies: [
            "ReproVerify",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: numericCodeSettings),
        .testTarget(name: "ReproNNTests", dependencies: ["ReproNN"], swiftSettings: numericCodeSettings),
        .testTarget(name: "ReproTrainingTests", dependencies: ["ReproTraining"], swiftSettings: numericCodeSettings),
        .testTarget(name: "ReproVerifyTests", dependencies: ["ReproVerify"], swiftSettings: numericCodeSettings),
    ]
)
