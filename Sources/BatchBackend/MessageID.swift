/// MESSAGE_IDs of the key events, for `journalctl MESSAGE_ID=…` and the
/// message catalog (systemd/batchd.catalog, shown by `journalctl -x`). Never
/// change a published id; add new ones.
public enum MessageID {
    public static let jobAccepted = "3b907d90ac394d0c9d55b81b4d86b14a"
    public static let jobRejected = "9a357ef8a94d471f84eee87b37b68e55"
    public static let jobSucceeded = "679ece3d78424f488177b3553f46be93"
    public static let jobFailed = "fbf99c300c3849e8ba33739cf9997509"
    public static let jobCancelled = "84ce923c81ae4896bff256ec9b4bda89"
    public static let poolCreated = "772389298dd74dc9915e476dfe5c3e21"
    public static let poolDeleted = "31e95b9213d143bd88bc40678e92acc6"
    public static let poolResized = "5bbc8aab21a4425590a6b79ae0f5701c"
    public static let daemonReady = "d89b44c3056c44c39296fa473f73e349"
    public static let daemonStopping = "bd55653017d34299bf3d8ad372bf956a"
    public static let daemonReloaded = "0b0760b2ab9d417eaa022de3c3f32af0"

    /// Every id with its name, for the catalog check.
    public static let all: [(String, String)] = [
        ("jobAccepted", jobAccepted), ("jobRejected", jobRejected), ("jobSucceeded", jobSucceeded),
        ("jobFailed", jobFailed), ("jobCancelled", jobCancelled), ("poolCreated", poolCreated),
        ("poolDeleted", poolDeleted), ("poolResized", poolResized), ("daemonReady", daemonReady), ("daemonStopping", daemonStopping),
        ("daemonReloaded", daemonReloaded),
    ]
}
