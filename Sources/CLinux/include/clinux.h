#ifndef BATCHD_CLINUX_H
#define BATCHD_CLINUX_H
#include <sys/types.h>

/// pidfd_open(2): a file descriptor that becomes readable when `pid` exits;
/// -1 with errno set where the kernel lacks it. (syscall(2) is variadic, which
/// Swift cannot call.)
int batchd_pidfd_open(pid_t pid);

/// Closes every descriptor from `first` up (close_range(2), with a fallback).
void batchd_close_from(int first);

/// A close-on-exec eventfd, for waking a thread blocked in poll(2).
int batchd_eventfd(void);

#endif
