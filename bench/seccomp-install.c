/*
 * What the sandbox's seccomp filter costs.  Installing it (what nsinit exec adds to each
 * command, and bwrap to each create): in RUNS forked children, no_new_privs then the
 * install, timed around the install alone.  Each system call under it: CALLS getppid()
 * calls (about the cheapest there is) in one child, timed in thread CPU time (which other
 * load on the machine hardly changes) before and after the install.  Prints
 * {"runs":N,"median_us":…,"p95_us":…,"instructions":…,"plain_ns":…,"filtered_ns":…}.
 *   cc -O2 -I src/sandbox/backends/linux-ns -o seccomp-install bench/seccomp-install.c src/sandbox/backends/linux-ns/seccomp.c
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "seccomp.h"

#define RUNS 400
#define CALLS 2000000

/* ns per getppid() over CALLS calls, in this thread's CPU time. */
static double ns_per_call(void) {
    struct timespec start, end;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
    for (int i = 0; i < CALLS; i++) syscall(SYS_getppid);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &end);
    return ((double)(end.tv_sec - start.tv_sec) * 1e9 + (double)(end.tv_nsec - start.tv_nsec)) / CALLS;
}

static int ascending(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    double took[RUNS];
    if (!sandbox_filter()) return 1;
    for (int i = 0; i < RUNS; i++) {
        int result[2];
        if (pipe(result) < 0) return 1;
        pid_t child = fork();
        if (child == 0) {
            struct timespec start, end;
            prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            clock_gettime(CLOCK_MONOTONIC, &start);
            if (install_sandbox_filter() < 0) _exit(1);
            clock_gettime(CLOCK_MONOTONIC, &end);
            double us = (double)(end.tv_sec - start.tv_sec) * 1e6 + (double)(end.tv_nsec - start.tv_nsec) / 1e3;
            if (write(result[1], &us, sizeof us) != sizeof us) _exit(1);
            _exit(0);
        }
        if (read(result[0], &took[i], sizeof took[i]) != sizeof took[i]) return 1;
        close(result[0]);
        close(result[1]);
        waitpid(child, NULL, 0);
    }
    qsort(took, RUNS, sizeof took[0], ascending);

    double per_call[2];
    int result[2];
    if (pipe(result) < 0) return 1;
    pid_t child = fork();
    if (child == 0) {
        double measured[2];
        measured[0] = ns_per_call();
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (install_sandbox_filter() < 0) _exit(1);
        measured[1] = ns_per_call();
        if (write(result[1], measured, sizeof measured) != sizeof measured) _exit(1);
        _exit(0);
    }
    if (read(result[0], per_call, sizeof per_call) != sizeof per_call) return 1;
    waitpid(child, NULL, 0);
    printf("{\"runs\":%d,\"median_us\":%.1f,\"p95_us\":%.1f,\"instructions\":%u,\"plain_ns\":%.1f,\"filtered_ns\":%.1f}\n",
           RUNS, took[RUNS / 2], took[RUNS * 95 / 100], sandbox_filter()->len, per_call[0], per_call[1]);
    return 0;
}
