/*
 * nsinit init: pid 1 of a gVisor sandbox (see guest.h).
 *
 *   nsinit init [--forward PORT SOCKET]... [--exec-server SOCKET UID GID]
 *
 * Starts a forwarder (as `nsinit forward --port PORT --socket SOCKET` would, see
 * guest-forward.c) for each --forward, listening before the sandbox is said to be up:
 * the daemon then needs no `runsc exec` of its own for the proxy's port.  With
 * --exec-server it reads a key line on stdin (the daemon's, before anything else runs).
 * Once the ports listen it writes "ready" on stdout (runsc run's stdout is a pipe to the
 * daemon, which takes the line as the sandbox being up) and puts /dev/null on its stdio,
 * so nothing of the daemon stays reachable through it; then, while the daemon answers,
 * it forks the exec server (guest-serve.c), which uses the CAP_SETUID, CAP_SETGID and
 * CAP_SETPCAP the daemon gives init (its only capabilities) to become UID:GID with none;
 * init drops them all right after that fork, and forks the forwarders (a connection made
 * before waits in its port's backlog).  Then it reaps for ever: every process an exec leaves
 * behind is reparented to it, and stays a zombie until it is waited for.  The sandbox's
 * seccomp filter is installed before anything else starts.  The sandbox ends when the
 * daemon kills it.
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

/* Ports one init forwards (the proxy's and the credential gateway's, today). */
#define MAX_FORWARDS 16

/* A child of init: 0 in the child, which starts with no signal blocked (init blocks SIGCHLD). */
static pid_t fork_child(void) {
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
    }
    return child;
}

/* A forwarder of its own for `listener`, a child of init; init keeps no fd of it. */
static void start_forwarder(int listener, const struct sockaddr_un *daemon) {
    if (fork_child() == 0) _exit(forward_serve(listener, daemon));
    close(listener);
}

/* The key line the daemon writes on init's stdin: hex, as the daemon makes it. */
static void read_key(char *key, size_t size) {
    size_t len = 0;
    while (len < size - 1) {
        ssize_t n = read(0, key + len, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || key[len] == '\n') break;
        len++;
    }
    key[len] = 0;
    if (len == 0 || len == size - 1 || strspn(key, "0123456789abcdef") != len) fail("--exec-server: no key line on stdin");
}

int guest_init_main(int argc, char **argv) {
    const char *exec_socket = NULL;
    long exec_uid = -1, exec_gid = -1;
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "--forward") && i + 2 < argc) {
            long port = parse_number(argv[i], argv[i + 1]);
            if (port <= 0 || port > 65535) fail("--forward: not a port: %s", argv[i + 1]);
            i += 3;
        } else if (!strcmp(argv[i], "--exec-server") && i + 3 < argc) {
            exec_socket = argv[i + 1];
            exec_uid = parse_number(argv[i], argv[i + 2]);
            exec_gid = parse_number(argv[i], argv[i + 3]);
            i += 4;
        } else {
            fail("usage: nsinit init [--forward PORT SOCKET]... [--exec-server SOCKET UID GID]");
        }
    }
    close_inherited_fds(NULL, 0);

    /* SIGCHLD blocked and taken with sigwaitinfo: no exit is missed between two waits. */
    sigset_t children;
    sigemptyset(&children);
    sigaddset(&children, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &children, NULL) < 0) die("block SIGCHLD");

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("PR_SET_NO_NEW_PRIVS");
    if (install_sandbox_filter() < 0) die("install the seccomp filter");
    /* Not dumpable: a workload that is root inside too cannot read the key from its memory before the server takes it. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) die("PR_SET_DUMPABLE");

    char key[129] = "";
    if (exec_socket) read_key(key, sizeof key);
    /* The ports listen before the sandbox is said to be up: a connection made at once waits for its forwarder. */
    int listeners[MAX_FORWARDS];
    struct sockaddr_un daemons[MAX_FORWARDS];
    int forwards = 0;
    for (int i = 1; i < argc;) {
        if (strcmp(argv[i], "--forward")) {
            i += 4;
            continue;
        }
        if (forwards == MAX_FORWARDS) fail("--forward: at most %d ports", MAX_FORWARDS);
        long port = parse_number(argv[i], argv[i + 1]);
        listeners[forwards] = forward_listen(port);
        if (listeners[forwards] < 0) fail("--forward: 127.0.0.1:%ld is taken", port);
        forward_address(argv[i + 2], &daemons[forwards++]);
        i += 3;
    }

    /* Up: the processes below start while the daemon answers (each fork copies an address space in gVisor). */
    static const char ready[] = "ready\n";
    if (write(1, ready, sizeof ready - 1) != (ssize_t)(sizeof ready - 1)) die("write ready");
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) die("open /dev/null");
    for (int fd = 0; fd <= 2; fd++)
        if (dup2(null, fd) < 0) die("dup2 /dev/null");
    close(null);

    if (exec_socket && fork_child() == 0) {
        setsid();
        guest_serve(exec_socket, exec_uid, exec_gid, key);
    }
    explicit_bzero(key, sizeof key);
    drop_bounding_set();
    clear_capabilities();
    for (int k = 0; k < forwards; k++) start_forwarder(listeners[k], &daemons[k]);

    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        if (sigwaitinfo(&children, NULL) < 0 && errno != EINTR) die("sigwaitinfo");
    }
}
