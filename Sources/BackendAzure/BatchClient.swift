import BatchHTTP
import Foundation

/// A Batch answer other than the one expected, with the service's error code.
public struct BatchServiceError: Error, Sendable, CustomStringConvertible {
    /// HTTP status.
    public var status: Int
    /// e.g. PoolExists, JobNotFound, RequestBodyTooLarge.
    public var code: String
    /// The service's message (it never contains our secrets).
    public var message: String
    /// What was being done.
    public var operation: String
    /// The service's `Date` header, when it answered (its clock, for a
    /// request refused for the time it carried).
    public var serverDate: String?
    /// `operation: HTTP status code: message`.
    public var description: String { "\(operation): HTTP \(status) \(code): \(message)" }

    /// An error.
    public init(status: Int, code: String, message: String, operation: String, serverDate: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.operation = operation
        self.serverDate = serverDate
    }
}

/// The outcome of adding one task.
public struct TaskAddResult: Sendable, Equatable {
    /// The task id.
    public var taskID: String
    /// Added now, or already there from an earlier try.
    public var added: Bool
    /// The error code when it could not be added (never TaskExists: that is success).
    public var error: String?
}

/// Azure Batch over the libcurl transport, signed with Shared Key.
public struct BatchClient: Sendable {
    /// HTTP with retries.
    public let http: HTTPClient
    /// e.g. https://acct.westeurope.batch.azure.com.
    public let endpoint: String
    let authorizer: Authorizer
    /// The REST API version sent.
    public static let apiVersion = "2025-06-01"
    /// Collection requests in flight at once.
    public var concurrency = 4
    /// Most tasks per addtaskcollection call (the service's limit).
    public static let maxTasksPerCollection = 100
    /// Largest request body the service takes.
    public static let maxBodyBytes = 1_000_000

    /// A client for one Batch account, signing with its Shared Key.
    public init(http: HTTPClient, endpoint: String, account: String, key: Secret) {
        self.init(http: http, endpoint: endpoint, authorizer: .sharedKey(RequestSigner(service: .batch, account: account, key: key)))
    }

    /// A client for one Batch account, with any authorizer (Entra ID tokens).
    public init(http: HTTPClient, endpoint: String, authorizer: Authorizer) {
        self.http = http
        self.endpoint = endpoint
        self.authorizer = authorizer
    }

    /// Sends one call; `idempotent` lets the retry policy resend a POST.
    func call(_ operation: String, _ method: String, _ path: String, query: [(String, String)] = [],
              body: Any? = nil, idempotent: Bool = false) async throws -> HTTPResponse {
        let q = ([("api-version", Self.apiVersion)] + query).map { "\(ServiceSAS.encode($0.0))=\(ServiceSAS.encode($0.1))" }.joined(separator: "&")
        let data = try body.map { try JSONSerialization.data(withJSONObject: $0) }
        return try await send(url: "\(endpoint)\(path)?\(q)", method: method, body: data, idempotent: idempotent || method != "POST")
    }

    func send(url: String, method: String, body: Data?, idempotent: Bool) async throws -> HTTPResponse {
        try await authorizer.execute(http, idempotent: idempotent) {
            var headers: [(name: String, value: String)] = [("client-request-id", UUID().uuidString)]
            if body != nil { headers.append(("Content-Type", "application/json; odata=minimalmetadata")) }
            return HTTPRequest(method: method, url: url, headers: headers, body: body.map { .data($0) } ?? .none)
        }
    }

    static func error(_ r: HTTPResponse, _ operation: String) -> BatchServiceError {
        let obj = (try? JSONSerialization.jsonObject(with: r.body)) as? [String: Any]
        var message = ((obj?["message"] as? [String: Any])?["value"] as? String)?.components(separatedBy: "\n").first ?? ""
        // Why authentication failed is in the values (never a secret: the service's words).
        for v in obj?["values"] as? [[String: Any]] ?? [] where v["key"] as? String == "AuthenticationErrorDetail" {
            if let detail = v["value"] as? String { message += " (\(detail))" }
        }
        return BatchServiceError(status: r.status, code: obj?["code"] as? String ?? "", message: message, operation: operation,
                                 serverDate: r.header("Date"))
    }

    func json(_ r: HTTPResponse) -> [String: Any] { ((try? JSONSerialization.jsonObject(with: r.body)) as? [String: Any]) ?? [:] }

    // MARK: pools and jobs

    /// Creates a pool; false if one with that id exists already.
    @discardableResult
    public func createPool(_ body: [String: Any]) async throws -> Bool {
        let r = try await call("create pool", "POST", "/pools", body: body)
        if r.status == 409 && Self.error(r, "").code == "PoolExists" { return false }
        guard r.status == 201 else { throw Self.error(r, "create pool \(body["id"] ?? "")") }
        return true
    }

    /// A pool, or nil if it does not exist.
    public func pool(_ id: String) async throws -> [String: Any]? {
        let r = try await call("get pool", "GET", "/pools/\(id)")
        if r.status == 404 { return nil }
        guard r.status == 200 else { throw Self.error(r, "get pool \(id)") }
        return json(r)
    }

    /// Every pool (for orphan listing).
    public func pools() async throws -> [[String: Any]] { try await list("/pools", query: [], operation: "list pools") }

    /// Deletes a pool; false if there was none.
    @discardableResult
    public func deletePool(_ id: String) async throws -> Bool {
        let r = try await call("delete pool", "DELETE", "/pools/\(id)")
        if r.status == 404 { return false }
        if r.status == 409 && Self.error(r, "").code == "PoolBeingDeleted" { return true }
        guard r.status == 202 else { throw Self.error(r, "delete pool \(id)") }
        return true
    }

    /// Asks for new node counts; throws PoolNotSteady (409) while a resize runs.
    public func resizePool(_ id: String, dedicated: Int, spot: Int) async throws {
        let r = try await call("resize pool", "POST", "/pools/\(id)/resize",
                               body: ["targetDedicatedNodes": dedicated, "targetLowPriorityNodes": spot])
        guard r.status == 202 else { throw Self.error(r, "resize pool \(id)") }
    }

    /// Creates a job; false if one with that id exists already.
    @discardableResult
    public func createJob(_ body: [String: Any]) async throws -> Bool {
        let r = try await call("create job", "POST", "/jobs", body: body)
        if r.status == 409 && Self.error(r, "").code == "JobExists" { return false }
        guard r.status == 201 else { throw Self.error(r, "create job \(body["id"] ?? "")") }
        return true
    }

    /// A job, or nil.
    public func job(_ id: String) async throws -> [String: Any]? {
        let r = try await call("get job", "GET", "/jobs/\(id)")
        if r.status == 404 { return nil }
        guard r.status == 200 else { throw Self.error(r, "get job \(id)") }
        return json(r)
    }

    /// Changes the properties given (Job_Patch). Returns false when the job
    /// has already completed (nothing left to change).
    @discardableResult
    public func updateJob(_ id: String, _ patch: [String: Any]) async throws -> Bool {
        let r = try await call("update job", "PATCH", "/jobs/\(id)", body: patch)
        if r.status == 409 && Self.error(r, "").code == "JobCompleted" { return false }
        guard r.status == 200 else { throw Self.error(r, "update job \(id)") }
        return true
    }

    /// Every job (for orphan listing).
    public func jobs() async throws -> [[String: Any]] { try await list("/jobs", query: [], operation: "list jobs") }

    /// A pool's nodes: their ids and states.
    public func nodes(_ poolID: String) async throws -> [[String: Any]] {
        try await list("/pools/\(poolID)/nodes", query: [("$select", "id,state,errors")], operation: "list nodes")
    }

    /// Reboots a node (its running tasks are requeued): its start task runs again.
    public func rebootNode(_ poolID: String, _ nodeID: String) async throws {
        let r = try await call("reboot node", "POST", "/pools/\(poolID)/nodes/\(nodeID)/reboot", body: ["nodeRebootOption": "requeue"])
        guard r.status == 202 else { throw Self.error(r, "reboot node \(nodeID)") }
    }

    /// Removes nodes from a pool (its target shrinks by as many).
    public func removeNodes(_ poolID: String, _ nodeIDs: [String]) async throws {
        let r = try await call("remove nodes", "POST", "/pools/\(poolID)/removenodes", body: ["nodeList": nodeIDs])
        guard r.status == 202 else { throw Self.error(r, "remove nodes from pool \(poolID)") }
    }

    /// Terminates a job (its running tasks stop); an already completed one is fine.
    public func terminateJob(_ id: String, reason: String) async throws {
        let r = try await call("terminate job", "POST", "/jobs/\(id)/terminate", body: ["terminateReason": reason], idempotent: true)
        if r.status == 202 || r.status == 404 || (r.status == 409 && ["JobCompleted", "JobBeingDeleted"].contains(Self.error(r, "").code)) {
            return
        }
        throw Self.error(r, "terminate job \(id)")
    }

    /// Deletes a job; false if there was none.
    @discardableResult
    public func deleteJob(_ id: String) async throws -> Bool {
        let r = try await call("delete job", "DELETE", "/jobs/\(id)")
        if r.status == 404 { return false }
        if r.status == 409 && Self.error(r, "").code == "JobBeingDeleted" { return true }
        guard r.status == 202 else { throw Self.error(r, "delete job \(id)") }
        return true
    }

    // MARK: tasks

    /// Deletes a task (a running one is stopped); false if there was none.
    @discardableResult
    public func deleteTask(_ jobID: String, _ taskID: String) async throws -> Bool {
        let r = try await call("delete task", "DELETE", "/jobs/\(jobID)/tasks/\(taskID)")
        if r.status == 404 { return false }
        guard r.status == 200 else { throw Self.error(r, "delete task \(taskID)") }
        return true
    }

    /// Terminates a task (it moves to completed; a running one is stopped);
    /// one already completed, or gone, is fine.
    public func terminateTask(_ jobID: String, _ taskID: String) async throws {
        let r = try await call("terminate task", "POST", "/jobs/\(jobID)/tasks/\(taskID)/terminate", idempotent: true)
        if r.status == 204 || r.status == 404 || (r.status == 409 && Self.error(r, "").code == "TaskCompleted") { return }
        throw Self.error(r, "terminate task \(taskID)")
    }

    /// Adds tasks in collections of at most 100 and under 1 MB, several in
    /// flight. Ids are the caller's (deterministic), so every call may be
    /// resent: a task that exists already counts as added. Returns the tasks
    /// that could not be added, with the service's reason (none when all were).
    /// `added` runs after each collection is answered (the crash-point walk's
    /// `submit.collection`).
    public func addTasks(_ jobID: String, _ tasks: [[String: Any]], added: @Sendable () -> Void = {}) async throws -> [TaskAddResult] {
        try await addTasks(jobID, encoded: tasks.map { try JSONSerialization.data(withJSONObject: $0) }, added: added)
    }

    /// `addTasks` for task bodies already encoded as JSON.
    public func addTasks(_ jobID: String, encoded pieces: [Data], added: @Sendable () -> Void = {}) async throws -> [TaskAddResult] {
        let chunks = Self.chunks(pieces)
        var results: [TaskAddResult] = []
        try await withThrowingTaskGroup(of: [TaskAddResult].self) { group in
            var next = 0
            func add() {
                let chunk = chunks[next]
                next += 1
                group.addTask { try await addCollection(jobID, chunk) }
            }
            while next < chunks.count && next < concurrency { add() }
            while let r = try await group.next() {
                results += r
                added()
                if next < chunks.count { add() }
            }
        }
        return results
    }

    /// Splits serialized tasks into collections within both limits.
    static func chunks(_ pieces: [Data]) -> [[Data]] {
        var out: [[Data]] = []
        var current: [Data] = []
        var bytes = 12   // {"value":[]}
        for piece in pieces {
            if !current.isEmpty && (current.count == maxTasksPerCollection || bytes + piece.count + 1 > maxBodyBytes) {
                out.append(current)
                current = []
                bytes = 12
            }
            current.append(piece)
            bytes += piece.count + 1
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// Times tasks the service answered `servererror` for are sent again
    /// in one call, before the call fails as transient (and its step is
    /// tried again: TaskExists is success).
    static let serverErrorResends = 4

    func addCollection(_ jobID: String, _ pieces: [Data], resend: Int = 0) async throws -> [TaskAddResult] {
        var body = Data(#"{"value":["#.utf8)
        for (i, p) in pieces.enumerated() {
            if i > 0 { body.append(UInt8(ascii: ",")) }
            body.append(p)
        }
        body.append(contentsOf: Array("]}".utf8))
        let url = "\(endpoint)/jobs/\(jobID)/addtaskcollection?api-version=\(Self.apiVersion)"
        let r = try await send(url: url, method: "POST", body: body, idempotent: true)
        if r.status == 413 || (r.status == 400 && Self.error(r, "").code == "RequestBodyTooLarge") {
            guard pieces.count > 1 else { throw Self.error(r, "add a task to \(jobID)") }
            let half = pieces.count / 2
            return try await addCollection(jobID, Array(pieces[..<half])) + addCollection(jobID, Array(pieces[half...]))
        }
        guard r.status == 200 else { throw Self.error(r, "add tasks to \(jobID)") }
        // Decoded into the three fields read (JSONSerialization's bridging
        // of every result was a tenth of the daemon's CPU adding tasks).
        // The usual answer, every task added, is told by counting one
        // success per task, without decoding the answer.
        if Self.successes(in: r.body) == pieces.count {
            return []
        }
        // An answer that cannot be read, or that leaves a task out, is a
        // transient failure: adding again is safe (TaskExists is success).
        guard let values = (try? JSONDecoder().decode(AddCollectionResult.self, from: r.body))?.value, values.count == pieces.count else {
            throw BatchServiceError(status: 503, code: "UnreadableAnswer", message: "the add-collection answer does not account for every task",
                                    operation: "add tasks to \(jobID)")
        }
        // A task the service could not add for its own reasons (servererror)
        // is sent again, alone with the others like it; a client error is
        // the task's own, and the caller's to report.
        let failed = Set(values.filter { $0.status == "servererror" }.map { $0.taskId ?? "" })
        var refused = values.compactMap { v -> TaskAddResult? in
            let code = v.error?.code
            let ok = v.status == "success" || code == "TaskExists" || v.status == "servererror"
            return ok ? nil : TaskAddResult(taskID: v.taskId ?? "", added: false, error: code ?? v.status ?? "error")
        }
        if !failed.isEmpty {
            guard resend < Self.serverErrorResends else {
                throw BatchServiceError(status: 503, code: "ServerError", message: "the service could not add \(failed.count) task(s)",
                                        operation: "add tasks to \(jobID)")
            }
            try await Task.sleep(for: .seconds(0.2 * Double(1 << resend)))
            let again = pieces.filter { Self.taskID(of: $0).map(failed.contains) ?? true }
            refused += try await addCollection(jobID, again, resend: resend + 1)
        }
        return refused
    }

    /// The id of an encoded task body.
    static func taskID(of piece: Data) -> String? {
        ((try? JSONSerialization.jsonObject(with: piece)) as? [String: Any])?["id"] as? String
    }

    /// How many times the answer says `"status": "success"` (the key, a
    /// colon and the value, with any JSON whitespace between). Only a key is
    /// followed by a colon, and inside a string the quotes would be escaped,
    /// so each match is one task's status.
    static func successes(in data: Data) -> Int {
        let key = Array(#""status""#.utf8), value = Array(#""success""#.utf8)
        return data.withUnsafeBytes { (b: UnsafeRawBufferPointer) -> Int in
            func matches(_ word: [UInt8], at i: Int) -> Bool {
                i + word.count <= b.count && word.indices.allSatisfy { b[i + $0] == word[$0] }
            }
            func blank(_ i: Int) -> Int {
                var i = i
                while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 }
                return i
            }
            var count = 0, i = 0
            while i < b.count {
                if b[i] == UInt8(ascii: "\""), matches(key, at: i) {
                    var j = blank(i + key.count)
                    if j < b.count, b[j] == UInt8(ascii: ":") {
                        j = blank(j + 1)
                        if matches(value, at: j) { count += 1 }
                    }
                    i += key.count
                } else {
                    i += 1
                }
            }
            return count
        }
    }

    /// What an add-collection answer says of each task.
    struct AddCollectionResult: Decodable {
        struct Item: Decodable {
            struct Failure: Decodable { let code: String? }
            let status: String?
            let taskId: String?
            let error: Failure?
        }
        let value: [Item]
    }

    /// Task counts: active, running, completed, succeeded, failed.
    public func taskCounts(_ jobID: String) async throws -> [String: Int] {
        let r = try await call("task counts", "GET", "/jobs/\(jobID)/taskcounts")
        guard r.status == 200 else { throw Self.error(r, "task counts of \(jobID)") }
        return json(r)["taskCounts"] as? [String: Int] ?? [:]
    }

    /// Tasks of a job, filtered and trimmed by the service, every page.
    public func tasks(_ jobID: String, filter: String? = nil, select: [String]? = nil, pageSize: Int = 1000) async throws -> [[String: Any]] {
        var q: [(String, String)] = [("maxresults", String(pageSize))]
        if let filter { q.append(("$filter", filter)) }
        if let select { q.append(("$select", select.joined(separator: ","))) }
        return try await list("/jobs/\(jobID)/tasks", query: q, operation: "list tasks of \(jobID)")
    }

    /// The files in a task's directory on the node where it last ran, all
    /// the way down, by name relative to it (`wd/out.txt`) with their sizes;
    /// nil when the node, or the task's files, are gone.
    public func taskFiles(_ jobID: String, _ taskID: String) async throws -> [String: Int64]? {
        let items: [[String: Any]]
        do {
            items = try await list("/jobs/\(jobID)/tasks/\(taskID)/files", query: [("recursive", "true")], operation: "list task files")
        } catch let e as BatchServiceError where e.status == 404 || e.status == 409 {
            return nil
        }
        var files: [String: Int64] = [:]
        for item in items where item["isDirectory"] as? Bool != true {
            guard let name = item["name"] as? String else { continue }
            let size = (item["properties"] as? [String: Any])?["contentLength"]
            files[name] = (size as? String).flatMap { Int64($0) } ?? (size as? Int).map(Int64.init) ?? -1
        }
        return files
    }

    func list(_ path: String, query: [(String, String)], operation: String) async throws -> [[String: Any]] {
        var out: [[String: Any]] = []
        var r = try await call(operation, "GET", path, query: query)
        while true {
            guard r.status == 200 else { throw Self.error(r, operation) }
            let page = json(r)
            out += page["value"] as? [[String: Any]] ?? []
            guard let next = page["odata.nextLink"] as? String, !next.isEmpty else { return out }
            r = try await send(url: next, method: "GET", body: nil, idempotent: true)
        }
    }
}
