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
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk", from: "0.12.1"),
    ],
    targets: [
        .executableTarget(
            name: "Easel",
            dependencies: [
                "EaselCore", "EaselRunners", "EaselHTTP", "EaselMCP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "EaselCore",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
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
                "EaselCore", "EaselRunners", "EaselStore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                "EaselMCP",
                .product(name: "MCP", package: "swift-sdk"),
            ]
        ),
        .target(
            name: "EaselMCP",
            dependencies: [
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "EaselStore",
            dependencies: [
                "EaselCore",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .testTarget(name: "EaselCoreTests", dependencies: ["EaselCore", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "EaselRunnersTests", dependencies: ["EaselRunners"]),
        .testTarget(name: "EaselStoreTests", dependencies: ["EaselStore", "EaselCore"]),
        .testTarget(name: "EaselHTTPTests", dependencies: ["EaselHTTP", "EaselCore"]),
        .testTarget(name: "EaselMCPTests", dependencies: ["EaselMCP", .product(name: "MCP", package: "swift-sdk")]),
    ]
)
