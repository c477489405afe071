// batchd-exec: the supervisor every task attempt runs under (local, and on
// Slurm's nodes).
//
//   batchd-exec ATTEMPT_DIR [--hide PATH]... [--user UID:GID:GROUP,...]
//               [--secrets-fd N | --secrets-file PATH] -- PROGRAM [ARG...]
//   batchd-exec --run-as UID:GID:GROUP,... -- PROGRAM [ARG...]
//
// It runs PROGRAM in ATTEMPT_DIR/work with SIGTERM/SIGINT/SIGHUP at their
// defaults and waits for it. ATTEMPT_DIR/status says "pid N" while it runs
// and "exit N MS" or "signal N MS" once the command has ended (MS: how long
// it ran, in milliseconds): one fixed-width record, rewritten in place. The command's stdout and stderr come through
// pipes into ATTEMPT_DIR/stdout and ATTEMPT_DIR/stderr, each file created
// when its first byte arrives, so a log the command leaves empty costs no
// file. batchd starts batchd-exec in a new session, so it outlives a daemon
// that was killed, and the daemon reads the status file when it comes back.
// It ignores SIGTERM itself so that when batchd stops the process group it
// still records how the command died; SIGKILL ends it like anything else.
//
// Nothing here is fsync'd: the status file tells a daemon that was killed
// what happened while the machine kept running, and the page cache keeps it
// for that. After a machine crash the task's processes and its unsynced
// outputs are gone too, so an attempt without a status is rightly counted
// lost and run again (docs/architecture.md, "What each write protects").
//
// With --hide, it first confines itself and the command with Landlock: no
// file-system access at all beneath each PATH (the daemon's state, runtime
// and credentials directories) except beneath ATTEMPT_DIR, and no signals to
// processes outside the sandbox. The daemon asks for this when the task is
// another user's than its own (docs/security.md); if the kernel refuses, the
// command is not run.
//
// With --user, the command runs as that user: batchd-exec itself stays the
// daemon's user (so the daemon may watch it and read its files), and the
// process it forks takes on the uid, gid and supplementary groups given,
// numeric, before it executes the command (docs/security.md). Whatever the
// user, neither the command nor batchd-exec keeps any capability the daemon
// had (the system unit gives the daemon CAP_SETUID and CAP_SETGID for this).
//
// --secrets-fd and --secrets-file give the command variables of the job's
// `secrets:` (NAME=VALUE entries, each ended by a NUL byte): from a
// descriptor the daemon passes (locally), or from a file in the attempt
// directory, mode 0600, the submitter's (on Slurm's nodes). They reach only
// the command's environment, never batchd-exec's own (whose
// /proc/PID/environ the daemon's user may read), and batchd-exec forgets
// them once the command has started. A file that cannot be read stops the
// attempt (exit 126) rather than run the command without them.
//
// --run-as is for the daemon's own use of a command as a submitter (sbatch,
// squeue, scancel and sacct on Slurm, so that the cluster sees who submits):
// it takes on the identity, drops every capability, and executes PROGRAM,
// nothing more.
//
// It is C, linked statically, because it starts once per task: measured on
// the reference machine, the Swift runtime's start-up alone took 2.2 ms of
// CPU per launch, this whole program with `sh -c true` 1.1 ms
// (docs/architecture.md). Needing nothing but the kernel, it also runs on
// cluster nodes that have no Swift runtime.
#define _GNU_SOURCE
#include "clinux.h"

#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *dir;
static int status_fd = -1;

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (!p) abort();
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

// A message of batchd-exec's own, added to the attempt's stderr file (where
// `batchctl logs` shows it); to the inherited stderr while there is none.
static void say(const char *fmt, const char *a, const char *b) {
    char text[1024];
    snprintf(text, sizeof text, fmt, a ? a : "", b ? b : "");
    int fd = -1;
    if (dir) {
        char *path = join(dir, "stderr");
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
        free(path);
    }
    dprintf(fd >= 0 ? fd : 2, "batchd-exec: %s\n", text);
    if (fd >= 0) close(fd);
}

// When the command was started (CLOCK_MONOTONIC), for its run time.
static struct timespec began;
static int started = 0;

// The status record: fixed width, so rewriting it in place never leaves a
// mix of two records behind; the daemon reads "WORD N", and at the end
// "WORD N MS": how long the command ran, in milliseconds (core-hours on a
// backend that learns an attempt's end from this file alone).
static void record(const char *word, long n) {
    char text[40];
    memset(text, ' ', sizeof text);
    int len;
    if (strcmp(word, "pid") != 0) {
        long ms = 0;
        if (started) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            ms = (long)(now.tv_sec - began.tv_sec) * 1000 + (now.tv_nsec - began.tv_nsec) / 1000000;
        }
        len = snprintf(text, sizeof text, "%s %ld %ld", word, n, ms);
    } else {
        len = snprintf(text, sizeof text, "%s %ld", word, n);
    }
    text[len] = ' ';
    text[sizeof text - 1] = '\n';
    if (pwrite(status_fd, text, sizeof text, 0) != (ssize_t)sizeof text) {
        say("cannot write the status file: %s%s", strerror(errno), NULL);
        exit(127);
    }
}

static void finish(const char *word, int n, int code) {
    record(word, n);
    exit(code);
}

// One of the command's output pipes and the file it fills once it has
// something to say.
struct sink { int pipe; int file; const char *name; };

static void write_all(int fd, const char *buf, ssize_t len) {
    for (ssize_t off = 0; off < len;) {
        ssize_t w = write(fd, buf + off, (size_t)(len - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        off += w;
    }
}

// Moves what the pipe holds into the file (created with the first byte);
// 0 at end of file, 1 when the pipe is empty for now.
static int pump(struct sink *s) {
    static char buf[65536];
    for (;;) {
        if (s->file >= 0) {
            ssize_t n = splice(s->pipe, NULL, s->file, NULL, 1 << 20, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) continue;
            if (n == 0) return 0;
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 1;
            // (a file system that refuses splice: copy instead)
        }
        ssize_t r = read(s->pipe, buf, sizeof buf);
        if (r == 0) return 0;
        if (r < 0) return errno == EAGAIN || errno == EINTR ? 1 : 0;
        if (s->file < 0) {
            char *path = join(dir, s->name);
            s->file = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
            free(path);
            if (s->file < 0) s->file = open("/dev/null", O_WRONLY | O_CLOEXEC);
        }
        write_all(s->file, buf, r);
    }
}

// The job's secrets, read before anything else: NAME=VALUE entries.
static char *secret_buf;
static size_t secret_len;
static char *secret_vars[64];
static int nsecret_vars;

static int read_secrets(int fd) {
    size_t cap = 1 << 20;
    secret_buf = malloc(cap + 1);
    if (!secret_buf) abort();
    for (;;) {
        ssize_t n = read(fd, secret_buf + secret_len, cap + 1 - secret_len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        secret_len += (size_t)n;
        if (secret_len > cap) { errno = EFBIG; return -1; }
    }
    for (size_t at = 0; at < secret_len;) {
        char *entry = secret_buf + at;
        size_t len = strnlen(entry, secret_len - at);
        if (at + len >= secret_len || !memchr(entry, '=', len) || nsecret_vars >= 64) { errno = EINVAL; return -1; }
        secret_vars[nsecret_vars++] = entry;
        at += len + 1;
    }
    return 0;
}

// The command's environment: ours, without what a secret names, then the secrets.
static char **command_environment(void) {
    if (nsecret_vars == 0) return environ;
    size_t n = 0;
    while (environ[n]) n++;
    char **out = calloc(n + (size_t)nsecret_vars + 1, sizeof *out);
    if (!out) abort();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int named = 0;
        for (int j = 0; j < nsecret_vars && !named; j++) {
            size_t len = (size_t)(strchr(secret_vars[j], '=') - secret_vars[j]) + 1;
            named = strncmp(environ[i], secret_vars[j], len) == 0;
        }
        if (!named) out[k++] = environ[i];
    }
    for (int j = 0; j < nsecret_vars; j++) out[k++] = secret_vars[j];
    return out;
}

// --user UID:GID:G1,G2,...: numbers only (the daemon looked the user up).
static int parse_user(const char *text, unsigned *uid, unsigned *gid, unsigned *groups, int max, int *n) {
    char *end;
    errno = 0;
    unsigned long u = strtoul(text, &end, 10);
    if (errno || end == text || *end != ':' || u >= 0xffffffffUL) return -1;
    text = end + 1;
    unsigned long g = strtoul(text, &end, 10);
    if (errno || end == text || *end != ':' || g >= 0xffffffffUL) return -1;
    text = end + 1;
    *uid = (unsigned)u;
    *gid = (unsigned)g;
    *n = 0;
    while (*text) {
        unsigned long x = strtoul(text, &end, 10);
        if (errno || end == text || x >= 0xffffffffUL || *n >= max) return -1;
        groups[(*n)++] = (unsigned)x;
        if (*end == ',') end++;
        else if (*end) return -1;
        text = end;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *usage = "usage: batchd-exec ATTEMPT_DIR [--hide PATH]... [--user UID:GID:GROUP,...] -- PROGRAM [ARG...]";
    if (argc < 4) { say("%s%s", usage, NULL); return 127; }
    if (strcmp(argv[1], "--run-as") == 0) {
        unsigned uid, gid, groups[1024];
        int n;
        if (argc < 5 || strcmp(argv[3], "--") != 0 || parse_user(argv[2], &uid, &gid, groups, 1024, &n) != 0) {
            say("usage: batchd-exec --run-as UID:GID:GROUP,... -- PROGRAM [ARG...]%s", NULL, NULL);
            return 127;
        }
        if (batchd_become(uid, gid, groups, n) != 0) {
            char who[64];
            snprintf(who, sizeof who, "uid %u gid %u", uid, gid);
            say("cannot run as %s: %s", who, strerror(errno));
            return 126;
        }
        execvp(argv[4], argv + 4);
        say("cannot run %s: %s", argv[4], strerror(errno));
        return 127;
    }
    int at = 2, nhidden = 0, as_user = 0, ngroups = 0;
    unsigned uid = 0, gid = 0, groups[1024];
    const char **hidden = calloc((size_t)argc, sizeof *hidden);
    if (!hidden) abort();
    const char *secrets_from = NULL;
    int secrets_fd = -1;
    while (at + 1 < argc && (strcmp(argv[at], "--hide") == 0 || strcmp(argv[at], "--user") == 0
                             || strcmp(argv[at], "--secrets-fd") == 0 || strcmp(argv[at], "--secrets-file") == 0)) {
        if (argv[at][2] == 'h') {
            hidden[nhidden++] = argv[at + 1];
        } else if (strcmp(argv[at], "--secrets-fd") == 0) {
            secrets_fd = atoi(argv[at + 1]);
        } else if (strcmp(argv[at], "--secrets-file") == 0) {
            secrets_from = argv[at + 1];
        } else if (parse_user(argv[at + 1], &uid, &gid, groups, 1024, &ngroups) == 0) {
            as_user = 1;
        } else {
            say("--user wants UID:GID:GROUP,... in numbers, not %s%s", argv[at + 1], NULL);
            return 127;
        }
        at += 2;
    }
    if (!(at + 1 < argc && strcmp(argv[at], "--") == 0)) { say("%s%s", usage, NULL); return 127; }
    char **program = argv + at + 1;
    dir = argv[1];

    // The secrets first: their descriptor is one of those closed next.
    int secrets_failed = 0, secrets_errno = 0;
    if (secrets_fd >= 0 || secrets_from) {
        int fd = secrets_fd >= 0 ? secrets_fd : open(secrets_from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        secrets_failed = fd < 0 || read_secrets(fd) != 0;
        secrets_errno = errno;
        if (fd >= 0) close(fd);
    }
    // Descriptors the daemon may have leaked are not the task's business.
    batchd_close_from(3);
    char *status = join(dir, "status");
    status_fd = open(status, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (status_fd < 0) { say("cannot write %s: %s", status, strerror(errno)); return 127; }
    record("pid", (long)getpid());
    if (secrets_failed) {
        say("cannot read the job's secrets: %s%s; the task is not run without them", strerror(secrets_errno), NULL);
        finish("exit", 126, 126);
    }
    char *work = join(dir, "work");
    if (chdir(work) != 0) { say("cannot enter %s: %s", work, strerror(errno)); finish("exit", 127, 127); }

    if (nhidden > 0) {
        const char *allowed[1] = {dir};
        if (batchd_landlock_hide(hidden, nhidden, allowed, 1) < 0) {
            say("cannot confine the task with Landlock: %s%s; it is not run", strerror(errno), NULL);
            finish("exit", 126, 126);
        }
    }

    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);

    struct sink sinks[2] = {{-1, -1, "stdout"}, {-1, -1, "stderr"}};
    int ends[2][2];
    for (int i = 0; i < 2; i++) {
        if (pipe2(ends[i], O_CLOEXEC) != 0) { say("cannot make a pipe: %s%s", strerror(errno), NULL); finish("exit", 127, 127); }
        sinks[i].pipe = ends[i][0];
        fcntl(ends[i][0], F_SETFL, O_NONBLOCK);
    }
    // The command's start: a pipe that stays open until it executes (its
    // close-on-exec end closes then), carrying why, if it could not.
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) { say("cannot make a pipe: %s%s", strerror(errno), NULL); finish("exit", 127, 127); }
    clock_gettime(CLOCK_MONOTONIC, &began);
    started = 1;
    pid_t child = fork();
    if (child < 0) { say("cannot fork: %s%s", strerror(errno), NULL); finish("exit", 127, 127); }
    if (child == 0) {
        // Single-threaded: everything here is safe after fork.
        struct { int stage; int err; } why = {0, 0};
        dup2(ends[0][1], 1);
        dup2(ends[1][1], 2);
        int defaults[] = {SIGTERM, SIGINT, SIGHUP, SIGPIPE};
        for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++) signal(defaults[i], SIG_DFL);
        sigset_t empty;
        sigemptyset(&empty);
        sigprocmask(SIG_SETMASK, &empty, NULL);
        if (as_user ? batchd_become(uid, gid, groups, ngroups) : (batchd_drop_capabilities(), 0)) {
            why.stage = 1;
        } else {
            execvpe(program[0], program, command_environment());
            why.stage = 2;
        }
        why.err = errno;
        if (write(report[1], &why, sizeof why) < 0) { /* the supervisor then reports a plain failure */ }
        _exit(127);
    }
    close(report[1]);
    close(ends[0][1]);
    close(ends[1][1]);
    // The supervisor needs no privilege, nor the secrets, from here on.
    batchd_drop_capabilities();
    if (secret_buf) explicit_bzero(secret_buf, secret_len);
    struct { int stage; int err; } why = {0, 0};
    ssize_t got;
    while ((got = read(report[0], &why, sizeof why)) < 0 && errno == EINTR) {}
    close(report[0]);
    if (got > 0) {
        int wstatus;
        while (waitpid(child, &wstatus, 0) < 0 && errno == EINTR) {}
        if (why.stage == 1) {
            char who[64];
            snprintf(who, sizeof who, "uid %u gid %u", uid, gid);
            say("cannot run the task as %s: %s", who, strerror(why.err));
            finish("exit", 126, 126);
        }
        say("cannot run %s: %s", program[0], strerror(why.err));
        finish("exit", 127, 127);
    }

    // Copy the logs until the command ends; then what is left in the pipes
    // (a background process still holding them open is not waited for).
    // Without a pidfd (a kernel before 5.3) the pipes are polled at most
    // 100 ms at a time and the child is looked for in between.
    int exited = batchd_pidfd_open(child);
    int open_pipes = 2, wstatus = 0, reaped = 0;
    while (open_pipes > 0) {
        struct pollfd p[3];
        int n = 0;
        for (int i = 0; i < 2; i++) if (sinks[i].pipe >= 0) p[n++] = (struct pollfd){sinks[i].pipe, POLLIN, 0};
        if (exited >= 0) p[n++] = (struct pollfd){exited, POLLIN, 0};
        if (poll(p, (nfds_t)n, exited >= 0 ? -1 : 100) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (exited >= 0 && p[n - 1].revents) break;
        for (int i = 0; i < 2; i++) {
            if (sinks[i].pipe < 0) continue;
            if (!pump(&sinks[i])) { close(sinks[i].pipe); sinks[i].pipe = -1; open_pipes--; }
        }
        if (exited < 0 && waitpid(child, &wstatus, WNOHANG) == child) { reaped = 1; break; }
    }
    while (!reaped && waitpid(child, &wstatus, 0) < 0) {
        if (errno != EINTR) { say("waitpid: %s%s", strerror(errno), NULL); finish("exit", 127, 127); }
    }
    for (int i = 0; i < 2; i++) if (sinks[i].pipe >= 0) pump(&sinks[i]);
    if (WIFEXITED(wstatus)) finish("exit", WEXITSTATUS(wstatus), WEXITSTATUS(wstatus));
    finish("signal", WTERMSIG(wstatus), 128 + WTERMSIG(wstatus));
}

// SwiftPM links every executable through swiftc, which adds swiftrt.o: a
// constructor registering the image with the Swift runtime, and a reference
// to the backtracer. This program has no Swift in it, so both are satisfied
// here, and the static link (-static-executable, Package.swift) takes nothing
// of libswiftCore: `ldd batchd-exec` says it is not a dynamic executable.
void swift_addNewDSOImage(const void *header) { (void)header; }
int _swift_backtrace_isThunkFunction(const char *name) { (void)name; return 0; }
