import BatchControl
import BatchSupport
import Foundation
import Logging
import ServiceLifecycle

/// Watches the inbox and feeds accepted jobs to the supervisor. On graceful
/// shutdown it stops claiming at once.
struct InboxService: Service {
    let intake: JobIntake
    let supervisor: Supervisor
    let watching = AsyncEvent<Void>()

    func run() async throws {
        await intake.forgetSolvedProblems()
        for claimed in await intake.leftovers() {
            if let id = await intake.process(claimed) { supervisor.enqueue(id) }
        }
        let watcher = try InboxWatcher(directory: intake.config.inboxDirectory)
        watcher.start()
        watching.fire(())
        intake.logger.info("watching the inbox", metadata: ["inbox": "\(intake.config.inboxDirectory)"])
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                for await name in watcher.names {
                    guard let claimed = await intake.claim(name) else { continue }
                    if let id = await intake.process(claimed) { supervisor.enqueue(id) }
                }
            } onGracefulShutdown: {
                watcher.stop()
            }
        } onCancel: {
            watcher.stop()
        }
    }
}
