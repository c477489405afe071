import BatchCore

/// The shipped backends' names, as the tests write jobs for them (BatchCore names none).
extension BackendKind {
    static let local = BackendKind(rawValue: "local")
    static let azure = BackendKind(rawValue: "azure")
    static let slurm = BackendKind(rawValue: "slurm")
}
