#define _GNU_SOURCE
#include "clinux.h"
#include <malloc.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <dirent.h>
#include <stdlib.h>
#include <sys/eventfd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

int batchd_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

long batchd_copy_file_range(int in, int out, unsigned long len) {
    return (long)copy_file_range(in, NULL, out, NULL, len, 0);
}

void batchd_close_from(int first) {
    if (syscall(SYS_close_range, (unsigned)first, ~0U, 0) == 0) return;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (fd >= first && fd != self) close(fd);
    }
    closedir(d);
}

int batchd_eventfd(void) {
    return eventfd(0, EFD_CLOEXEC);
}

#include <sys/epoll.h>

int batchd_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int batchd_epoll_add(int ep, int fd) {
    struct epoll_event ev = { .events = EPOLLIN, .data = { .fd = fd } };
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

int batchd_epoll_remove(int ep, int fd) {
    return epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
}

int batchd_epoll_wait(int ep, int *fds, int max, int timeout) {
    struct epoll_event events[64];
    if (max > 64) max = 64;
    int n = epoll_wait(ep, events, max, timeout);
    for (int i = 0; i < n; i++) fds[i] = events[i].data.fd;
    return n;
}

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <sys/xattr.h>

#include <sys/socket.h>

const int batchd_O_PATH = O_PATH;

int batchd_peer_credentials(int fd, int *pid, unsigned *uid, unsigned *gid) {
    struct ucred c;
    socklen_t n = sizeof c;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &n) != 0) return -1;
    *pid = c.pid;
    *uid = c.uid;
    *gid = c.gid;
    return 0;
}
#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

int batchd_peer_groups(int fd, unsigned *groups, int max) {
    socklen_t n = (socklen_t)(max * (int)sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &n) != 0) return -1;
    return (int)(n / sizeof(gid_t));
}
const int batchd_AT_EMPTY_PATH = AT_EMPTY_PATH;

int batchd_fsetxattr(int fd, const char *name, const void *value, unsigned long size) {
    return fsetxattr(fd, name, value, size, 0);
}

int batchd_setxattr(const char *path, const char *name, const void *value, unsigned long size) {
    return setxattr(path, name, value, size, 0);
}

long batchd_getxattr(const char *path, const char *name, void *value, unsigned long size) {
    return (long)getxattr(path, name, value, size);
}

long batchd_fs_type(int fd) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return -1;
    return (long)s.f_type;
}

#include <sys/mman.h>

int batchd_memfd_with(const char *name, const void *data, unsigned long len) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -1;
    const char *p = data;
    for (unsigned long off = 0; off < len;) {
        ssize_t n = write(fd, p + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { int e = errno; close(fd); errno = e; return -1; }
        off += (unsigned long)n;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) { int e = errno; close(fd); errno = e; return -1; }
    return fd;
}

int batchd_set_dumpable(int on) {
    return prctl(PR_SET_DUMPABLE, on ? 1 : 0, 0, 0, 0);
}

int batchd_limit_malloc_arenas(int n) {
    return mallopt(M_ARENA_MAX, n);
}

/* Landlock, with its constants written out so old kernel headers do not matter. */
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH 1
#define LL_EXECUTE (1ULL << 0)
#define LL_WRITE_FILE (1ULL << 1)
#define LL_READ_FILE (1ULL << 2)
#define LL_READ_DIR (1ULL << 3)
#define LL_REMOVE_DIR (1ULL << 4)
#define LL_REMOVE_FILE (1ULL << 5)
#define LL_MAKE_CHAR (1ULL << 6)
#define LL_MAKE_DIR (1ULL << 7)
#define LL_MAKE_REG (1ULL << 8)
#define LL_MAKE_SOCK (1ULL << 9)
#define LL_MAKE_FIFO (1ULL << 10)
#define LL_MAKE_BLOCK (1ULL << 11)
#define LL_MAKE_SYM (1ULL << 12)
#define LL_REFER (1ULL << 13)
#define LL_TRUNCATE (1ULL << 14)
#define LL_IOCTL_DEV (1ULL << 15)
#define LL_SCOPE_SIGNAL (1ULL << 1)

struct ll_ruleset_attr { uint64_t handled_access_fs; uint64_t handled_access_net; uint64_t scoped; };
struct ll_path_beneath { uint64_t allowed_access; int32_t parent_fd; } __attribute__((packed));

int batchd_landlock_abi(void) {
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
    return v < 0 ? -1 : (int)v;
}

static uint64_t ll_handled(int abi) {
    uint64_t r = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_READ_DIR | LL_REMOVE_DIR | LL_REMOVE_FILE |
                 LL_MAKE_CHAR | LL_MAKE_DIR | LL_MAKE_REG | LL_MAKE_SOCK | LL_MAKE_FIFO | LL_MAKE_BLOCK | LL_MAKE_SYM;
    if (abi >= 2) r |= LL_REFER;
    if (abi >= 3) r |= LL_TRUNCATE;
    if (abi >= 5) r |= LL_IOCTL_DEV;
    return r;
}

static int ll_add(int ruleset, const char *path, uint64_t handled) {
    int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;  /* gone meanwhile: nothing to grant */
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISLNK(st.st_mode)) { close(fd); return 0; }  /* a symlink's target has its own rule */
    uint64_t rights = handled;
    if (!S_ISDIR(st.st_mode)) rights &= LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV;
    struct ll_path_beneath pb = { .allowed_access = rights, .parent_fd = fd };
    long rc = syscall(SYS_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &pb, 0);
    int e = errno;
    close(fd);
    errno = e;
    return rc == 0 ? 0 : -1;
}

/* Whether `dir` is a strict ancestor of `path` ("/" is everyone's). */
static int ll_is_ancestor(const char *dir, const char *path) {
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/') return path[0] == '/' && path[1] != 0;
    return strncmp(dir, path, n) == 0 && path[n] == '/';
}

/* Grants every entry of `dir`, recursing into parents of hidden paths and skipping the hidden. */
static int ll_grant(int ruleset, const char *dir, const char *const *hidden, int nhidden, uint64_t handled, int depth) {
    if (depth > 64) { errno = ELOOP; return -1; }
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    char path[4096];
    int rc = 0;
    while ((e = readdir(d)) != NULL && rc == 0) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        int n = snprintf(path, sizeof path, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, e->d_name);
        if (n <= 0 || (size_t)n >= sizeof path) continue;
        int hide = 0, parent = 0;
        for (int i = 0; i < nhidden; i++) {
            if (strcmp(path, hidden[i]) == 0) hide = 1;
            else if (ll_is_ancestor(path, hidden[i])) parent = 1;
        }
        if (hide) continue;
        rc = parent ? ll_grant(ruleset, path, hidden, nhidden, handled, depth + 1) : ll_add(ruleset, path, handled);
    }
    closedir(d);
    return rc;
}

int batchd_landlock_hide(const char *const *hidden, int nhidden, const char *const *allowed, int nallowed) {
    int abi = batchd_landlock_abi();
    if (abi < 1) return -1;
    struct ll_ruleset_attr attr = { .handled_access_fs = ll_handled(abi), .handled_access_net = 0,
                                    .scoped = abi >= 6 ? LL_SCOPE_SIGNAL : 0 };
    size_t size = abi >= 6 ? sizeof attr : sizeof attr.handled_access_fs;
    int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (ruleset < 0) return -1;
    int rc = ll_grant(ruleset, "/", hidden, nhidden, attr.handled_access_fs, 0);
    for (int i = 0; rc == 0 && i < nallowed; i++) rc = ll_add(ruleset, allowed[i], attr.handled_access_fs);
    if (rc == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) rc = -1;
    if (rc == 0 && syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) rc = -1;
    int e = errno;
    close(ruleset);
    errno = e;
    return rc == 0 ? abi : -1;
}

/* libdispatch (the Swift runtime's thread pool) logs "Failed to set thread
 * priority for worker thread ... errno=13" through syslog, at notice
 * priority, for each worker thread it may not renice: every unprivileged
 * process does, so each batchctl run by a submitter, and the daemon under
 * its unit, wrote such lines into the journal. Its log is turned off before
 * main() and before any thread starts, unless LIBDISPATCH_LOG is set
 * (LIBDISPATCH_LOG=syslog brings it back). batchd's own logging is not
 * libdispatch's and is unaffected. */
__attribute__((constructor)) static void batchd_quiet_libdispatch(void) {
    setenv("LIBDISPATCH_LOG", "NO", 0);
}
