import EaselCore
import Foundation
import Hummingbird
import Logging
import NIOCore

/// The browser side: the page at `/`, the API reference at `/docs`, the OpenAPI document
/// at `/openapi.json`, and the page's files under `/static/`. They come from the `web/`
/// folder, found beside the executable (or a parent folder: a build inside the checkout)
/// or in the working folder, the way the runner package is found.
struct WebController {
    typealias Context = EaselRequestContext

    let folder: URL?
    let routes: RouteInventory
    let logger: Logger

    init(router: Router<Context>, logger: Logger) {
        folder = Self.locateWebFolder()
        routes = RouteInventory(router: router)
        self.logger = logger
        if folder == nil { logger.warning("no web/ folder found beside the executable or in the working folder: / and /docs answer 404") }
    }

    func addRoutes(to router: Router<Context>) {
        router.get("/", use: { request, _ in try self.file("index.html", request: request) })
        router.get("/docs", use: { request, _ in try self.file("docs.html", request: request) })
        router.get("/openapi.json", use: openAPI)
        router.get("/static/**", use: { request, context in
            try self.file(context.parameters.getCatchAll().joined(separator: "/"), request: request)
        })
    }

    static let mediaTypes: [String: String] = [
        "html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "mjs": "text/javascript; charset=utf-8",
        "css": "text/css; charset=utf-8", "json": "application/json", "svg": "image/svg+xml", "png": "image/png",
        "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp", "ico": "image/x-icon", "txt": "text/plain; charset=utf-8",
        "map": "application/json", "woff2": "font/woff2",
    ]

    @Sendable func openAPI(_ request: Request, context: Context) async throws -> Response {
        let response = try file("openapi.json", request: request)
        routes.checkDocumented(in: folder?.appendingPathComponent("openapi.json"), logger: logger)
        return response
    }

    /// A file of the web folder; names that are hidden or leave the folder are 404.
    func file(_ relativePath: String, request: Request) throws -> Response {
        let notFound = EaselError(.notFound, "no file '/\(relativePath)' in the web folder")
        guard let folder else { throw notFound }
        let components = relativePath.split(separator: "/", omittingEmptySubsequences: false)
        guard !components.isEmpty,
            components.allSatisfy({ !$0.isEmpty && !$0.hasPrefix(".") && !$0.contains("\\") && !$0.contains("\0") })
        else { throw notFound }
        let root = folder.standardizedFileURL.resolvingSymlinksInPath()
        let url = root.appendingPathComponent(relativePath).standardizedFileURL.resolvingSymlinksInPath()
        guard url.path.hasPrefix(root.path + "/") else { throw notFound }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue,
            let data = FileManager.default.contents(atPath: url.path)
        else { throw notFound }
        let type = Self.mediaTypes[url.pathExtension.lowercased()] ?? "application/octet-stream"
        return Response(
            status: .ok,
            headers: [.contentType: type, .cacheControl: "no-cache", .init("X-Content-Type-Options")!: "nosniff"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data))
        )
    }

    static func locateWebFolder() -> URL? {
        func holdsPage(_ url: URL) -> Bool { FileManager.default.fileExists(atPath: url.appendingPathComponent("index.html").path) }
        var candidates: [URL] = []
        if let configured = ProcessInfo.processInfo.environment["EASEL_WEB_DIR"], !configured.isEmpty {
            candidates.append(URL(fileURLWithPath: configured))
        }
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        while folder.path != "/" {
            candidates.append(folder.appendingPathComponent("web"))
            folder.deleteLastPathComponent()
        }
        candidates.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("web"))
        return candidates.first(where: holdsPage)?.standardizedFileURL
    }
}

/// The routes the router ended up with, read once the server runs (routes are added
/// after this controller's), to warn about any the OpenAPI document lacks.
final class RouteInventory: @unchecked Sendable {
    private let router: Router<EaselRequestContext>
    private let lock = NSLock()
    private var checked = false

    init(router: Router<EaselRequestContext>) { self.router = router }

    /// `METHOD /path` of every route, with `{name}` captures as OpenAPI writes them.
    /// Wildcard routes (the page's static files) are left out.
    var registered: [String] {
        router.routes.map { "\($0.method.rawValue) \($0.path)" }.filter { !$0.contains("*") }
    }

    func checkDocumented(in document: URL?, logger: Logger) {
        lock.lock()
        defer { lock.unlock() }
        guard !checked, let document, let data = FileManager.default.contents(atPath: document.path) else { return }
        checked = true
        let paths = ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any])?["paths"] as? [String: Any] ?? [:]
        var documented: Set<String> = []
        for (path, item) in paths {
            for method in (item as? [String: Any] ?? [:]).keys { documented.insert("\(method.uppercased()) \(path)") }
        }
        let routes = registered
        let missing = routes.filter { !documented.contains($0) }.sorted()
        if missing.isEmpty {
            logger.notice("openapi.json documents every route (\(routes.count) routes)")
        } else {
            logger.warning("routes missing from the OpenAPI document (web/openapi.json): \(missing.joined(separator: ", "))")
        }
    }
}
