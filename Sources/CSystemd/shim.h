#ifndef BATCHD_CSYSTEMD_SHIM_H
#define BATCHD_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <sys/uio.h>
#include <time.h>

/* CLOCK_MONOTONIC in microseconds, for RELOADING=1's MONOTONIC_USEC. */
static inline unsigned long long csystemd_monotonic_usec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL;
}
#endif
