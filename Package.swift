// swift-tools-version: 6.0
import PackageDescription

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
        ]),
        .target(name: "ReproNN", dependencies: ["ReproKernels"]),
        .target(name: "ReproData", dependencies: [
            "ReproNN",
            .product(name: "CompressNIO", package: "compress-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "ReproStorage", dependencies: ["CHDF5",
            .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: [.swiftLanguageMode(.v5)]),  // libhdf5's type ids are C globals
        .target(name: "ReproTraining", dependencies: ["ReproNN", "ReproData", "ReproStorage"]),
        .target(name: "ReproVerify", dependencies: ["ReproTraining"]),
        .executableTarget(name: "repro", dependencies: [
            "ReproVerify",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "ReproNNTests", dependencies: ["ReproNN"]),
        .testTarget(name: "ReproTrainingTests", dependencies: ["ReproTraining"]),
        .testTarget(name: "ReproVerifyTests", dependencies: ["ReproVerify"]),
    ]
)
