import BatchBackend
import BatchControl
import BatchCore
import BatchHTTP
import BatchStore
import Foundation
import Logging

/// The Azure backend's shared parts: one libcurl transport, the Batch and
/// Blob clients, the content-addressed input store, SAS signing, and one
/// task poller for the account that every job on it shares.
public final class AzureBackend: Sendable {
    public let settings: AzureSettings
    /// Written into the metadata of what batchd makes.
    public let owner: String
    let batch: BatchClient
    let blob: BlobClient
    let inputs: InputStore
    /// What signs the SAS tokens tasks get.
    let sasKeys: SASKeys
    let poller: TaskPoller
    /// Jobs waiting for the account's quotas, in acceptance order.
    let quota = QuotaQueue()
    /// SAS tokens allow https only, unless the blob endpoint is plain http (the emulator).
    let httpsOnly: Bool

    /// The daemon's database (the orphan check reads which jobs it knows).
    let ledger: BackendLedger
    let logger: Logger
    /// The config's `containers:` (its registries) and the daemon's
    /// credentials directory, for a container pool's registry login.
    let containers: ContainersConfig
    let credentialsDirectory: String?

    init(settings: AzureSettings, owner: String, batch: BatchClient, blob: BlobClient, sasKeys: SASKeys, httpsOnly: Bool,
         ledger: BackendLedger, logger: Logger, containers: ContainersConfig = ContainersConfig(), credentialsDirectory: String? = nil) {
        self.containers = containers
        self.credentialsDirectory = credentialsDirectory
        self.ledger = ledger
        self.logger = logger
        self.settings = settings
        self.owner = owner
        self.batch = batch
        self.blob = blob
        self.sasKeys = sasKeys
        self.httpsOnly = httpsOnly
        inputs = InputStore(blob: blob, container: settings.inputContainer)
        poller = TaskPoller(client: batch, schedule: PollSchedule(minInterval: settings.pollMinInterval, maxInterval: settings.pollMaxInterval),
                            nodeRecoveries: settings.nodeRecoveries, logger: logger)
    }

    /// Builds the backend from credentials in the environment or systemd's
    /// credentials directory. Throws (with what to set, never a value) when
    /// they are missing.
    public static func make(settings: AzureSettings, variables: [String: String], hostName: String, ledger: BackendLedger,
                            logger: Logger, containers: ContainersConfig = ContainersConfig()) throws -> AzureBackend {
        let credentialsDirectory = variables["CREDENTIALS_DIRECTORY"]
        let creds = try AzureCredentials.load(environment: variables) { name in
            guard let dir = credentialsDirectory, let data = FileManager.default.contents(atPath: "\(dir)/\(name)") else { return nil }
            return String(decoding: data, as: UTF8.self)
        }
        var transportConfig = TransportConfiguration()
        transportConfig.maxConnectionsPerHost = max(4, settings.concurrency * 2)
        // A few quick retries per request (0.5 + 1 + 2 s, or what Retry-After
        // asks); past that the job's own step retries, with longer backoff,
        // take over: those stop at once on cancel or shutdown, a request's
        // retries do not.
        var http = HTTPClient(transport: CurlTransport(configuration: transportConfig), policy: HTTPRetryPolicy(maxAttempts: 4))
        // At debug level (batchd --log-level debug), every request, redacted.
        http.trace = logger
        let batchAuth: Authorizer
        if let key = creds.batchKey {
            batchAuth = .sharedKey(RequestSigner(service: .batch, account: creds.batchAccount, key: key))
        } else {
            let tokens = TokenProvider(http: http, authorityHost: creds.authorityHost, tenant: creds.tenantID ?? "", clientID: creds.clientID ?? "",
                                       secret: creds.clientSecret ?? Secret(""), scope: TokenProvider.batchScope)
            batchAuth = .bearer(tokens, .batch)
        }
        var batch = BatchClient(http: http, endpoint: creds.batchEndpoint, authorizer: batchAuth)
        batch.concurrency = settings.concurrency
        // Blob with the storage key when there is one; else with Entra ID
        // tokens, and SAS tokens signed with user delegation keys.
        let blobAuth: Authorizer
        if let key = creds.storageKey {
            blobAuth = .sharedKey(RequestSigner(service: .blob, account: creds.storageAccount, key: key))
        } else {
            blobAuth = .bearer(TokenProvider(http: http, authorityHost: creds.authorityHost, tenant: creds.tenantID ?? "", clientID: creds.clientID ?? "",
                                             secret: creds.clientSecret ?? Secret(""), scope: TokenProvider.storageScope), .blob)
        }
        var blob = BlobClient(http: http, endpoint: creds.blobEndpoint, authorizer: blobAuth)
        blob.blockSize = Int64(settings.blockSize)
        blob.concurrency = settings.concurrency
        let owner = settings.owner.isEmpty ? "batchd@\(hostName)" : settings.owner
        logger.info("azure backend configured", metadata: [
            "batch.account": "\(creds.batchAccount)", "batch.endpoint": "\(creds.batchEndpoint)", "storage.account": "\(creds.storageAccount)",
            "auth": "\(creds.batchKey == nil ? "entra-id" : "shared-key")", "owner": "\(owner)",
            "storage.auth": "\(creds.storageKey == nil ? "entra-id, user delegation SAS" : "shared-key")",
        ])
        return AzureBackend(settings: settings, owner: owner, batch: batch, blob: blob,
                            sasKeys: SASKeys(account: creds.storageAccount, blob: blob, accountKey: creds.storageKey),
                            httpsOnly: !creds.blobEndpoint.lowercased().hasPrefix("http:"), ledger: ledger, logger: logger,
                            containers: containers, credentialsDirectory: credentialsDirectory)
    }

    /// Stops the HTTP transport (its curl thread ends); at daemon exit.
    public func shutdown() { batch.http.transport.shutdown() }

    /// A SAS URL of a container for tasks to write (`c`, `w`) into, valid `seconds`.
    func writeURL(container: String, seconds: Double, sas: ServiceSAS, now: Date = Date()) throws -> String {
        let token = try sas.token(container: container, permissions: "cw", start: now.addingTimeInterval(-300),
                                  expiry: now.addingTimeInterval(seconds), httpsOnly: httpsOnly)
        return "\(blob.url(container))?\(token)"
    }

    /// The longest a job's tokens may live: the config's, and with user
    /// delegation keys (which live at most 7 days) a quarter of an hour less.
    var maxTokenLifetime: Double {
        sasKeys.usesDelegation ? min(settings.maxTokenLifetime, SASKeys.maxKeySeconds - 900) : settings.maxTokenLifetime
    }

    /// Every job's Azure record (what this daemon's database knows).
    func azureRecords() async throws -> [AzureJobRecord] {
        try await ledger.records(AzureJobRecord.key, as: AzureJobRecord.self).map(\.value)
    }

    /// The pool a Batch job runs on (its auto-pool's id, once the service made it).
    func autoPoolID(_ batchJobID: String) async throws -> String? {
        ((try await batch.job(batchJobID))?["executionInfo"] as? [String: Any])?["poolId"] as? String
    }

    /// Pools and jobs on the account that carry this daemon's owner tag,
    /// each marked orphan when no job in the database knows it.
    func inventory() async throws -> [HeldItem] {
        let known = try await azureRecords()
        let knownJobs = Set(known.map(\.jobId))
        let knownBatchJobs = Set(known.flatMap(\.batchJobs))
        let knownPools = Set(known.compactMap(\.poolId))
        var out: [HeldItem] = []
        for p in try await batch.pools() {
            let meta = BatchBodies.metadata(p)
            guard meta[BatchBodies.ownerKey] == owner, let id = p["id"] as? String else { continue }
            let job = meta[BatchBodies.jobKey]
            let orphan = !knownPools.contains(id) && (job.map { !knownJobs.contains($0) } ?? true)
            let nodes = (p["currentDedicatedNodes"] as? Int ?? 0) + (p["currentLowPriorityNodes"] as? Int ?? 0)
            out.append(HeldItem(kind: job == nil ? "pool" : "auto-pool", id: id, state: p["state"] as? String ?? "",
                                     job: job, nodes: nodes, orphan: orphan))
        }
        for j in try await batch.jobs() {
            let meta = BatchBodies.metadata(j)
            guard meta[BatchBodies.ownerKey] == owner, let id = j["id"] as? String else { continue }
            out.append(HeldItem(kind: "job", id: id, state: j["state"] as? String ?? "", job: meta[BatchBodies.jobKey],
                                     nodes: nil, orphan: !knownBatchJobs.contains(id)))
        }
        return out
    }

    /// Deletes orphans (jobs first, so their tasks stop before pools go).
    func delete(_ orphans: [HeldItem], logger: Logger) async {
        for item in orphans.sorted(by: { ($0.kind == "job" ? 0 : 1) < ($1.kind == "job" ? 0 : 1) }) {
            do {
                if item.kind == "job" { try await batch.deleteJob(item.id) } else { try await batch.deletePool(item.id) }
                logger.notice("orphan deleted", metadata: ["kind": "\(item.kind)", "id": "\(item.id)"])
            } catch {
                logger.warning("could not delete an orphan", metadata: ["kind": "\(item.kind)", "id": "\(item.id)", "error": "\(error)"])
            }
        }
    }
}

extension AzureBackend {
    /// Looks once for orphans (deleting them when `azure.deleteOrphans`
    /// says so), then runs the account's task poller until cancelled.
    func runBackground() async {
        do {
            let orphans = try await inventory().filter(\.orphan)
            for o in orphans {
                logger.warning("orphan on Azure Batch: tagged as this daemon's, unknown to its database", metadata: [
                    "kind": "\(o.kind)", "id": "\(o.id)", "state": "\(o.state)",
                    "action": "\(settings.deleteOrphans ? "deleting" : "kept (azure.deleteOrphans is off; see batchctl pools)")",
                ])
            }
            if settings.deleteOrphans { await delete(orphans, logger: logger) }
        } catch {
            logger.warning("could not list pools and jobs to look for orphans", metadata: ["error": "\(error)"])
        }
        // Idle named pools, looked for every azure.poolIdleCheck beside the poller.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.poller.run() }
            group.addTask {
                while !Task.isCancelled {
                    await self.resizeIdlePools()
                    try? await Task.sleep(for: .seconds(self.settings.poolIdleCheck))
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
}

/// What signs SAS tokens: the storage account key, or user delegation keys
/// asked for with Entra ID, each kept until a token would outlive it.
public actor SASKeys {
    let account: String
    let blob: BlobClient
    let accountKey: Secret?
    var cached: UserDelegationKey?
    /// Whether tokens are user delegation SAS (no account key).
    public nonisolated let usesDelegation: Bool

    /// The longest a user delegation key lives.
    public static let maxKeySeconds: Double = 7 * 86400

    /// Signing with `accountKey`, or, without one, with user delegation keys from `blob`.
    public init(account: String, blob: BlobClient, accountKey: Secret?) {
        self.account = account
        self.blob = blob
        self.accountKey = accountKey
        usesDelegation = accountKey == nil
    }

    /// A signer whose tokens may live until `expiry`.
    public func signer(until expiry: Date, now: Date = Date()) async throws -> ServiceSAS {
        if let accountKey { return ServiceSAS(account: account, key: accountKey) }
        if let key = cached, key.expiryDate >= expiry { return ServiceSAS(account: account, delegation: key) }
        // As long as a key may live (from five minutes ago, for clocks a
        // little apart), so one key serves every job of the week.
        let start = now.addingTimeInterval(-300)
        let end = start.addingTimeInterval(Self.maxKeySeconds - 300)
        guard end >= expiry else {
            throw AzureError.tokenTooShort("tokens until \(ServiceSAS.isoDate(expiry)) would outlive a user delegation key (7 days at most)")
        }
        let key = try await blob.userDelegationKey(start: start, expiry: end)
        cached = key
        return ServiceSAS(account: account, delegation: key)
    }
}
