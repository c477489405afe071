#ifndef BATCHD_CLINUX_H
#define BATCHD_CLINUX_H
#include <sys/types.h>

/// pidfd_open(2): a file descriptor that becomes readable when `pid` exits;
/// -1 with errno set where the kernel lacks it. (syscall(2) is variadic, which
/// Swift cannot call.)
int batchd_pidfd_open(pid_t pid);

/// copy_file_range(2) from and to the files' current offsets (-1 and errno on failure).
long batchd_copy_file_range(int in, int out, unsigned long len);

/// Closes every descriptor from `first` up (close_range(2), with a fallback).
void batchd_close_from(int first);

/// A close-on-exec eventfd, for waking a thread blocked in poll(2).
int batchd_eventfd(void);

/// epoll(7), without the packed struct Swift cannot import: a close-on-exec
/// epoll instance; watching `fd` for input; no longer watching it; and
/// waiting up to `timeout` ms (-1: forever) for at most `max` (≤ 64) ready
/// descriptors, written to `fds`. Each returns what its syscall does.
int batchd_epoll_create(void);
int batchd_epoll_add(int ep, int fd);
int batchd_epoll_remove(int ep, int fd);
int batchd_epoll_wait(int ep, int *fds, int max, int timeout);

/// O_PATH, which Glibc's Swift module hides (it needs _GNU_SOURCE).
extern const int batchd_O_PATH;

/// AT_EMPTY_PATH (also hidden without _GNU_SOURCE).
extern const int batchd_AT_EMPTY_PATH;

/// getxattr(2).
long batchd_getxattr(const char *path, const char *name, void *value, unsigned long size);

/// fsetxattr(2).
int batchd_fsetxattr(int fd, const char *name, const void *value, unsigned long size);

/// setxattr(2).
int batchd_setxattr(const char *path, const char *name, const void *value, unsigned long size);

/// The pid, uid and gid of the process at the other end of a Unix socket
/// (SO_PEERCRED); 0 on success, -1 with errno set.
int batchd_peer_credentials(int fd, int *pid, unsigned *uid, unsigned *gid);

/// The supplementary groups of the process at the other end of a Unix
/// socket, as they were when it connected (SO_PEERGROUPS): how many were
/// written to `groups` (at most `max`); -1 with errno set (ERANGE: more than `max`).
int batchd_peer_groups(int fd, unsigned *groups, int max);

/// The file system type (statfs(2)'s f_type) of what `fd` refers to; -1 on error.
long batchd_fs_type(int fd);

/// A close-on-exec memfd (memfd_create(2)) holding `len` bytes of `data`,
/// read from its start; -1 with errno set.
int batchd_memfd_with(const char *name, const void *data, unsigned long len);

/// prctl(PR_SET_DUMPABLE): 0 makes /proc/<pid>/environ, mem and fd of this
/// process unreadable to other processes of the same user.
int batchd_set_dumpable(int on);

/// mallopt(M_ARENA_MAX, n): at most `n` malloc arenas for the process's
/// threads (glibc's default is eight per core). 1 on success.
int batchd_limit_malloc_arenas(int n);

/// The Landlock ABI version the kernel offers, or -1 (errno says why).
int batchd_landlock_abi(void);

/// Restricts this process and everything it executes with Landlock: every
/// file-system right is denied beneath each of the `nhidden` paths in
/// `hidden`, except beneath the `nallowed` paths in `allowed`, and granted
/// everywhere else (every entry that exists now beside the hidden paths and
/// their parents); with Landlock ABI 6 or later, signals to processes
/// outside the sandbox are refused too. Returns the ABI used, or -1 with
/// errno set (nothing is restricted then).
int batchd_landlock_hide(const char *const *hidden, int nhidden, const char *const *allowed, int nallowed);

/// Identities (identity.c). Linux keeps credentials per thread; glibc's
/// set*id wrappers change every thread of the process, the raw system calls
/// used here only the calling one.

/// 1 when this process may take on another user's identity (CAP_SETUID and
/// CAP_SETGID in its effective set), else 0.
int batchd_can_switch_users(void);

/// kill(2) of `target` (a pid, or -pgid for a group) with the calling
/// thread's effective uid set to `uid` for the call only: the signal reaches
/// that user's processes, and, the real uid being unchanged, the caller's
/// own. Returns what kill returns. Needs CAP_SETUID when `uid` is another's.
int batchd_kill_as(unsigned uid, int target, int sig);

/// Sets the calling thread's file-system uid, gid and supplementary groups
/// (every later permission check of this thread is made as them, and what it
/// creates is theirs). 0 on success, -1 with errno set (nothing is changed
/// then). Needs CAP_SETUID and CAP_SETGID for another's identity.
int batchd_thread_fs_identity(unsigned uid, unsigned gid, const unsigned *groups, int ngroups);

/// The calling thread's file-system uid and gid, and its supplementary
/// groups (at most `max` written to `groups`): how many groups, or -1.
int batchd_thread_fs_current(unsigned *uid, unsigned *gid, unsigned *groups, int max);

/// Takes on the identity for good (for the process about to exec a task):
/// supplementary groups, gid, uid, then drops every capability (effective,
/// permitted, inheritable and ambient). 0 on success, -1 with errno set.
int batchd_become(unsigned uid, unsigned gid, const unsigned *groups, int ngroups);

/// Drops every capability of the calling process (effective, permitted,
/// inheritable, ambient); 0 on success.
int batchd_drop_capabilities(void);

#endif
