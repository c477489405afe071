import Foundation

/// Where the Azure backend's accounts and secrets come from: systemd
/// credentials ($CREDENTIALS_DIRECTORY/<NAME>) first, then the environment,
/// under the names the Azure tools use. Never from the manifest or the config.
public struct AzureCredentials: Sendable {
    /// Batch account name.
    public var batchAccount: String
    /// Batch account URL, e.g. https://acct.westeurope.batch.azure.com (or the emulator's).
    public var batchEndpoint: String
    /// Batch Shared Key, if that is how we sign.
    public var batchKey: Secret?
    /// Storage account name.
    public var storageAccount: String
    /// Blob endpoint, e.g. https://acct.blob.core.windows.net (or http://127.0.0.1:P/acct).
    public var blobEndpoint: String
    /// Storage Shared Key.
    public var storageKey: Secret?
    /// Entra ID tenant, client id and secret, for the "unattended account".
    public var tenantID: String?
    /// See `tenantID`.
    public var clientID: String?
    /// See `tenantID`.
    public var clientSecret: Secret?
    /// Entra ID authority host.
    public var authorityHost: String

    /// The names read, for documentation and error messages.
    public static let names = ["AZURE_BATCH_ACCOUNT", "AZURE_BATCH_ACCESS_KEY", "AZURE_BATCH_ENDPOINT", "AZURE_STORAGE_ACCOUNT",
                               "AZURE_STORAGE_KEY", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_TENANT_ID", "AZURE_CLIENT_ID",
                               "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST"]

    /// Reads credentials. `readCredential(name)` returns the content of
    /// $CREDENTIALS_DIRECTORY/<name> when that exists (trailing newline removed).
    public static func load(environment: [String: String], readCredential: (String) -> String?) throws -> AzureCredentials {
        func value(_ name: String) -> String? {
            if let v = readCredential(name)?.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty { return v }
            if let v = environment[name], !v.isEmpty { return v }
            return nil
        }
        var storageAccount = value("AZURE_STORAGE_ACCOUNT")
        var storageKey = value("AZURE_STORAGE_KEY").map(Secret.init)
        var blobEndpoint: String?
        if let cs = value("AZURE_STORAGE_CONNECTION_STRING") {
            let parts = try parseConnectionString(cs)
            storageAccount = storageAccount ?? parts["AccountName"]
            storageKey = storageKey ?? parts["AccountKey"].map(Secret.init)
            blobEndpoint = parts["BlobEndpoint"]
            if blobEndpoint == nil, let account = parts["AccountName"] {
                blobEndpoint = "\(parts["DefaultEndpointsProtocol"] ?? "https")://\(account).blob.\(parts["EndpointSuffix"] ?? "core.windows.net")"
            }
        }
        guard let batchAccount = value("AZURE_BATCH_ACCOUNT") else {
            throw AzureError.badCredentials("AZURE_BATCH_ACCOUNT is not set (environment or systemd credential)")
        }
        guard let batchEndpoint = value("AZURE_BATCH_ENDPOINT") else {
            throw AzureError.badCredentials("AZURE_BATCH_ENDPOINT is not set, e.g. https://\(batchAccount).<region>.batch.azure.com")
        }
        guard let storage = storageAccount else {
            throw AzureError.badCredentials("no storage account: set AZURE_STORAGE_ACCOUNT or AZURE_STORAGE_CONNECTION_STRING")
        }
        let creds = AzureCredentials(
            batchAccount: batchAccount, batchEndpoint: batchEndpoint.trimmingSuffix("/"), batchKey: value("AZURE_BATCH_ACCESS_KEY").map(Secret.init),
            storageAccount: storage, blobEndpoint: (blobEndpoint ?? "https://\(storage).blob.core.windows.net").trimmingSuffix("/"),
            storageKey: storageKey, tenantID: value("AZURE_TENANT_ID"), clientID: value("AZURE_CLIENT_ID"),
            clientSecret: value("AZURE_CLIENT_SECRET").map(Secret.init),
            authorityHost: (value("AZURE_AUTHORITY_HOST") ?? "https://login.microsoftonline.com").trimmingSuffix("/"))
        let entra = creds.tenantID != nil && creds.clientID != nil && creds.clientSecret != nil
        if creds.batchKey == nil && !entra {
            throw AzureError.badCredentials("no way to sign Batch requests: set AZURE_BATCH_ACCESS_KEY, or AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET")
        }
        if creds.storageKey == nil && !entra {
            throw AzureError.badCredentials("no way to sign Blob requests: set AZURE_STORAGE_KEY (or a connection string with AccountKey), or the Entra ID client")
        }
        return creds
    }

    /// `Key=Value;Key=Value` into a dictionary; errors never echo the string (it holds the key).
    public static func parseConnectionString(_ text: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for part in text.split(separator: ";") where !part.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let eq = part.firstIndex(of: "=") else {
                throw AzureError.badCredentials("AZURE_STORAGE_CONNECTION_STRING is not of the form Key=Value;Key=Value")
            }
            out[String(part[..<eq]).trimmingCharacters(in: .whitespaces)] = String(part[part.index(after: eq)...])
        }
        return out
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
