import ArgumentParser
import BatchControl
import BatchStore
import Foundation

/// `batchctl`: submit jobs and look at them. It never writes the database:
/// submissions go through the inbox, commands through the control socket.
///
/// Exit codes: 0 success (a waited-for job succeeded), 1 the job failed or was
/// cancelled, 2 bad input (manifest or arguments), 3 the daemon could not be
/// reached, 4 no such job or task, 5 timed out waiting.
@main
struct Batchctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batchctl",
        abstract: "Submit batch jobs to batchd and inspect them.",
        discussion: """
            Exit codes: 0 ok, 1 job failed or cancelled, 2 bad input, 3 daemon unreachable, \
            4 not found, 5 timed out.
            """,
        version: BatchdVersion.current,
        subcommands: [Submit.self, List.self, Show.self, Watch.self, Logs.self, Wait.self, Cancel.self, Retry.self, PlanCommand.self, Pools.self, PoolCommand.self, Types.self, Outputs.self, Files.self])

    @OptionGroup var global: Global
}

/// Options every subcommand takes.
struct Global: ParsableArguments {
    @Option(name: .long, help: "The daemon's config file (batchctl reads the same one).")
    var config = ProcessInfo.processInfo.environment["BATCHD_CONFIG"] ?? "/etc/batchd/batchd.yaml"

    func load() throws -> DaemonConfig {
        do { return try DaemonConfig.load(path: config) } catch {
            throw CLIError(2, "\(error)")
        }
    }

    func store() throws -> Store {
        let c = try load()
        do { return try Store(readOnlyPath: c.databasePath) } catch { throw CLIError(3, "\(error)") }
    }

    /// Sends a request over the daemon's control socket: exit 3 if it cannot
    /// be reached, 1 with its reason if it refuses.
    func control(_ request: ControlRequest, timeout: Double = 10) throws -> ControlReply {
        let answer: ControlReply
        do { answer = try ControlClient.send(request, socket: try load().socketPath, timeout: timeout) } catch let e as CLIError {
            throw e
        } catch {
            throw CLIError(3, "\(error)")
        }
        guard answer.ok else { throw CLIError(1, answer.error ?? "\(request.op) refused") }
        return answer
    }

    /// A read through the daemon (docs/security.md, "Private by default"):
    /// its answer; nil when it cannot be reached, and then the caller reads
    /// the database itself, which only those who may read it can (root,
    /// the service user, a user unit's own user). A refusal ends batchctl
    /// with the daemon's words (exit 4 for no such job, else 1).
    func read(_ query: ReadQuery, timeout: Double = 10) throws -> ControlReply? {
        let config = try load()
        let answer: ControlReply
        do { answer = try ControlClient.send(.read(query), socket: config.socketPath, timeout: timeout) } catch { return nil }
        guard answer.ok else { throw CLIError(Int32(answer.code ?? 1), answer.error ?? "read refused") }
        return answer
    }

    /// A read's JSON object.
    static func object(_ answer: ControlReply) -> [String: Any] {
        (answer.report.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [String: Any]) ?? [:]
    }

    /// A job by id, name, or the inbox file `submit` printed; a submission
    /// not accepted yet is told apart from one that never was.
    func job(_ store: Store, _ idOrName: String) async throws -> JobRecord {
        if let job = try await store.job(idOrName) { return job }
        let config = try load()
        if !idOrName.contains("/"), !idOrName.hasPrefix(".") {
            if FileManager.default.fileExists(atPath: "\(config.inboxDirectory)/\(idOrName)") {
                throw CLIError(4, "\(idOrName) is still in the inbox: the daemon has not accepted it yet (is it running? systemctl status batchd)")
            }
            if FileManager.default.fileExists(atPath: "\(config.rejectedDirectory)/\(idOrName).error") {
                throw CLIError(4, "\(idOrName) was rejected; the reason is in \(config.rejectedDirectory)/\(idOrName).error")
            }
        }
        throw CLIError(4, "no job with id or name '\(idOrName)'")
    }
}

/// An error that ends batchctl with a message and an exit code.
struct CLIError: Error, CustomStringConvertible {
    let code: Int32
    let description: String
    init(_ code: Int32, _ description: String) {
        self.code = code
        self.description = description
    }
}

extension AsyncParsableCommand {
    /// Runs `body`, turning errors into a message on stderr and an exit code.
    func guarded(_ body: () async throws -> Void) async throws {
        do { try await body() } catch let e as CLIError {
            FileHandle.standardError.write(Data("batchctl: \(e.description)\n".utf8))
            throw ExitCode(e.code)
        } catch let e as ExitCode {
            throw e
        } catch {
            FileHandle.standardError.write(Data("batchctl: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}

func say(_ text: String) {
    FileHandle.standardOutput.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
}
