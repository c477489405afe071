// batchd-exec: the supervisor every local task attempt runs under.
//
//   batchd-exec ATTEMPT_DIR [--hide PATH]... -- PROGRAM [ARG...]
//
// It writes its pid to ATTEMPT_DIR/pid, sends its own stdout and stderr to
// ATTEMPT_DIR/stdout and ATTEMPT_DIR/stderr, runs PROGRAM in ATTEMPT_DIR/work
// with SIGTERM/SIGINT/SIGHUP at their defaults, waits for it, and writes how it
// ended to ATTEMPT_DIR/status ("exit N" or "signal N") with temp + fsync +
// rename. batchd starts it in a new session, so it outlives a daemon that was
// killed, and the daemon reads the status file when it comes back. It ignores
// SIGTERM itself so that when batchd stops the process group it still records
// how the command died; SIGKILL ends it like anything else.
//
// With --hide, it first confines itself and the command with Landlock: no
// file-system access at all beneath each PATH (the daemon's state, runtime
// and credentials directories) except beneath ATTEMPT_DIR, and no signals to
// processes outside the sandbox. The daemon asks for this when the task is
// another user's than its own (docs/security.md); if the kernel refuses, the
// command is not run.
import CLinux
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

func die(_ message: String) -> Never {
    let text = "batchd-exec: \(message)\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    exit(127)
}

func writeAll(_ fd: Int32, _ text: String) -> Bool {
    text.withCString { p in
        var off = 0
        let n = strlen(p)
        while off < n {
            let w = write(fd, p + off, n - off)
            if w < 0 { if errno == EINTR { continue }; return false }
            off += w
        }
        return true
    }
}

/// Writes `text` to `dir/name` atomically and durably.
func publish(_ dir: String, _ name: String, _ text: String) {
    let tmp = "\(dir)/.\(name).tmp"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { die("cannot write \(tmp): \(String(cString: strerror(errno)))") }
    guard writeAll(fd, text) else { die("cannot write \(tmp): \(String(cString: strerror(errno)))") }
    fsync(fd)
    close(fd)
    guard rename(tmp, "\(dir)/\(name)") == 0 else { die("cannot rename \(tmp): \(String(cString: strerror(errno)))") }
    let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 { fsync(dfd); close(dfd) }
}

let args = CommandLine.arguments
let usage = "usage: batchd-exec ATTEMPT_DIR [--hide PATH]... -- PROGRAM [ARG...]"
guard args.count >= 4 else { die(usage) }
let dir = args[1]
var hidden: [String] = []
var at = 2
while at + 1 < args.count, args[at] == "--hide" {
    hidden.append(args[at + 1])
    at += 2
}
guard at + 1 < args.count, args[at] == "--" else { die(usage) }
let program = Array(args[(at + 1)...])

// Output files first, so that every later error is visible in `batchctl logs`.
for (fd, name) in [(Int32(1), "stdout"), (Int32(2), "stderr")] {
    let f = open("\(dir)/\(name)", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard f >= 0 else { die("cannot open \(dir)/\(name): \(String(cString: strerror(errno)))") }
    dup2(f, fd)
    close(f)
}
publish(dir, "pid", "\(getpid())\n")
// Descriptors the daemon may have leaked are not the task's business.
batchd_close_from(3)
guard chdir("\(dir)/work") == 0 else { die("cannot enter \(dir)/work: \(String(cString: strerror(errno)))") }

if !hidden.isEmpty {
    var cHidden: [UnsafePointer<CChar>?] = hidden.map { UnsafePointer(strdup($0)) }
    var cAllowed: [UnsafePointer<CChar>?] = [UnsafePointer(strdup(dir))]
    if batchd_landlock_hide(&cHidden, Int32(hidden.count), &cAllowed, 1) < 0 {
        let message = "batchd-exec: cannot confine the task with Landlock: \(String(cString: strerror(errno))); it is not run\n"
        _ = writeAll(2, message)
        publish(dir, "status", "exit 126\n")
        exit(126)
    }
}

signal(SIGTERM, SIG_IGN)
signal(SIGINT, SIG_IGN)
signal(SIGHUP, SIG_IGN)

var attr = posix_spawnattr_t()
posix_spawnattr_init(&attr)
var defaults = sigset_t()
sigemptyset(&defaults)
for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, s) }
posix_spawnattr_setsigdefault(&attr, &defaults)
var empty = sigset_t()
sigemptyset(&empty)
posix_spawnattr_setsigmask(&attr, &empty)
posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

var cargs: [UnsafeMutablePointer<CChar>?] = program.map { strdup($0) } + [nil]
var child: pid_t = 0
let rc = posix_spawnp(&child, program[0], nil, &attr, &cargs, environ)
if rc != 0 {
    let message = "batchd-exec: cannot run \(program[0]): \(String(cString: strerror(rc)))\n"
    _ = writeAll(2, message)
    publish(dir, "status", "exit 127\n")
    exit(127)
}

var status: Int32 = 0
while waitpid(child, &status, 0) < 0 {
    if errno != EINTR { die("waitpid: \(String(cString: strerror(errno)))") }
}
// WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
let termsig = status & 0x7f
if termsig == 0 {
    let code = (status >> 8) & 0xff
    publish(dir, "status", "exit \(code)\n")
    exit(code)
} else {
    publish(dir, "status", "signal \(termsig)\n")
    exit(128 + termsig)
}
