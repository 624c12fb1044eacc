/*
 * nsinit init: pid 1 of a gVisor sandbox (see guest.h).
 *
 * Writes "ready" on stdout once it runs: runsc run's stdout is a pipe to the daemon,
 * which takes the line as the sandbox being up.  Then it puts /dev/null on its stdio,
 * so nothing of the daemon stays reachable through it, installs the sandbox's seccomp
 * filter, and reaps for ever: every process an exec leaves behind is reparented to it,
 * and stays a zombie until it is waited for.  The sandbox ends when the daemon kills it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest.h"
#include "seccomp.h"

int guest_init_main(int argc, char **argv) {
    (void)argv;
    if (argc != 1) fail("usage: nsinit init");
    close_inherited_fds(NULL, 0);

    /* SIGCHLD blocked and taken with sigwaitinfo: no exit is missed between two waits. */
    sigset_t children;
    sigemptyset(&children);
    sigaddset(&children, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &children, NULL) < 0) die("block SIGCHLD");

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("PR_SET_NO_NEW_PRIVS");
    if (install_sandbox_filter() < 0) die("install the seccomp filter");

    static const char ready[] = "ready\n";
    if (write(1, ready, sizeof ready - 1) != (ssize_t)(sizeof ready - 1)) die("write ready");
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) die("open /dev/null");
    for (int fd = 0; fd <= 2; fd++)
        if (dup2(null, fd) < 0) die("dup2 /dev/null");
    close(null);

    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        if (sigwaitinfo(&children, NULL) < 0 && errno != EINTR) die("sigwaitinfo");
    }
}
