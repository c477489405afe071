// Identities: who a thread acts as, and who a task runs as (clinux.h).
#define _GNU_SOURCE
#include "clinux.h"
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

static int effective_caps(uint32_t *low) {
    struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) return -1;
    *low = d[0].effective;
    return 0;
}

int batchd_can_switch_users(void) {
    uint32_t eff;
    if (effective_caps(&eff) != 0) return 0;
    uint32_t need = (1u << CAP_SETUID) | (1u << CAP_SETGID);
    return (eff & need) == need;
}

int batchd_kill_as(unsigned uid, int target, int sig) {
    uid_t r, e, s;
    if (syscall(SYS_getresuid, &r, &e, &s) != 0) return -1;
    if (uid == e) return kill(target, sig);
    if (syscall(SYS_setresuid, (uid_t)-1, (uid_t)uid, (uid_t)-1) != 0) return -1;
    int rc = kill(target, sig);
    int err = errno;
    // This thread must never go on as someone else.
    if (syscall(SYS_setresuid, (uid_t)-1, e, (uid_t)-1) != 0) abort();
    errno = err;
    return rc;
}

int batchd_thread_fs_identity(unsigned uid, unsigned gid, const unsigned *groups, int ngroups) {
    gid_t old_groups[1024];
    long n_old = syscall(SYS_getgroups, 1024, old_groups);
    if (n_old < 0) return -1;
    gid_t old_gid = (gid_t)setfsgid((gid_t)-1);
    if (syscall(SYS_setgroups, (size_t)ngroups, (const gid_t *)groups) != 0) return -1;
    // setfsuid/setfsgid report no error: they return the previous value,
    // and asking with -1 tells whether the change took.
    setfsgid((gid_t)gid);
    if ((gid_t)setfsgid((gid_t)-1) != (gid_t)gid) goto undo_groups;
    setfsuid((uid_t)uid);
    if ((uid_t)setfsuid((uid_t)-1) != (uid_t)uid) {
        setfsgid(old_gid);
        goto undo_groups;
    }
    return 0;
undo_groups:
    if (syscall(SYS_setgroups, (size_t)n_old, old_groups) != 0) abort();
    errno = EPERM;
    return -1;
}

int batchd_thread_fs_current(unsigned *uid, unsigned *gid, unsigned *groups, int max) {
    *uid = (unsigned)setfsuid((uid_t)-1);
    *gid = (unsigned)setfsgid((gid_t)-1);
    return (int)syscall(SYS_getgroups, max, (gid_t *)groups);
}

int batchd_drop_capabilities(void) {
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct d[2] = {{0, 0, 0}, {0, 0, 0}};
    return (int)syscall(SYS_capset, &h, d);
}

int batchd_become(unsigned uid, unsigned gid, const unsigned *groups, int ngroups) {
    if (syscall(SYS_setgroups, (size_t)ngroups, (const gid_t *)groups) != 0) return -1;
    if (syscall(SYS_setresgid, (gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) return -1;
    if (syscall(SYS_setresuid, (uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) return -1;
    if (batchd_drop_capabilities() != 0) return -1;
    // Checked, not assumed: a task never runs as anyone else.
    uid_t r, e, s;
    if (syscall(SYS_getresuid, &r, &e, &s) != 0 || r != uid || e != uid || s != uid) { errno = EPERM; return -1; }
    return 0;
}
