// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "easel",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "easel", targets: ["Easel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        .executableTarget(
            name: "Easel",
            dependencies: [
                "EaselCore", "EaselRunners", "EaselHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "EaselCore",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "EaselRunners",
            dependencies: [
                "EaselCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "EaselHTTP",
            dependencies: [
                "EaselCore", "EaselRunners",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        .testTarget(name: "EaselCoreTests", dependencies: ["EaselCore"]),
        .testTarget(name: "EaselRunnersTests", dependencies: ["EaselRunners"]),
    ]
)
