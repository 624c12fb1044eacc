/*
 * nsinit run: one command of an exec in a gVisor sandbox (see guest.h).
 *
 *   nsinit run --status-fd N [--control-fd N] [--tty COLS ROWS] [--cwd DIR] -- CMD [ARGS...]
 *
 * runsc exec starts it as the sandbox user, with no capabilities and no_new_privs; it
 * changes to DIR (/workspace by default), installs the sandbox's seccomp filter (on
 * itself too: it runs beside the workload, as the same user) and forks, and the child
 * execs CMD.  `runsc exec` has no terminal of its own to offer (no
 * -t; -console-socket hands a host pty over SCM_RIGHTS and gVisor never sees a resize),
 * so with --tty the helper opens a pseudo-terminal inside the sandbox: CMD leads a new
 * session on its slave, and the helper relays its stdin to the master and the master to
 * its stdout.  Without --tty CMD gets the helper's stdin, stdout and stderr as they are.
 *
 *   --control-fd N   lines from the daemon: "signal <n>" sends signal n to CMD, and
 *                    "size <cols> <rows>" resizes the terminal (SIGWINCH reaches CMD).
 *   --status-fd N    where CMD's end is written, "exit <code>" or "signal <n>": runsc exec
 *                    exits 128+n for both a signal and `exit 128+n`.  The helper then exits
 *                    the same way.
 *
 * 127 with "<cmd>: command not found" (126 with the error) when CMD cannot be executed;
 * the helper's own failures: "nsinit: <step>: <error>" and 125, before CMD starts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "guest.h"
#include "seccomp.h"

/* After CMD exits, output still buffered in the terminal is relayed until it stays quiet this long. */
#define DRAIN_QUIET_MS 50

/* SIGCHLD as an fd to poll: a signalfd, which no other process can open through /proc (a pipe could be). */
static int child_exited = -1;

/* Writes all of buf to a blocking fd; -1 when the reader is gone. */
int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Acts on the complete lines the daemon sent (guest.h); 0 once the daemon closed its end. */
int read_control(struct control *c, pid_t child, int master) {
    ssize_t n = read(c->fd, c->line + c->len, sizeof c->line - 1 - c->len);
    if (n < 0) return errno == EINTR || errno == EAGAIN;
    if (n == 0) return 0;
    c->len += (size_t)n;
    char *end;
    while ((end = memchr(c->line, '\n', c->len)) != NULL) {
        *end = 0;
        int a, b;
        if (sscanf(c->line, "signal %d", &a) == 1) {
            if (a > 0 && a < 65) kill(child, a);
        } else if (sscanf(c->line, "size %d %d", &a, &b) == 2 && master >= 0 && a > 0 && b > 0) {
            struct winsize size = {.ws_row = (unsigned short)b, .ws_col = (unsigned short)a};
            ioctl(master, TIOCSWINSZ, &size);
        }
        size_t used = (size_t)(end - c->line) + 1;
        memmove(c->line, end + 1, c->len - used);
        c->len -= used;
    }
    if (c->len == sizeof c->line - 1) c->len = 0;    /* a line that long is no command: dropped */
    return 1;
}

/* The child side: becomes CMD, on the terminal's slave when there is one. */
static void become_command(char **cmd, const char *slave, const struct winsize *size) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (slave) {
        if (setsid() < 0) { perror("nsinit: setsid"); _exit(SETUP_FAILED); }
        int fd = open(slave, O_RDWR);
        if (fd < 0 || ioctl(fd, TIOCSCTTY, 0) < 0) { perror("nsinit: take the terminal"); _exit(SETUP_FAILED); }
        ioctl(fd, TIOCSWINSZ, size);
        for (int k = 0; k <= 2; k++)
            if (dup2(fd, k) < 0) _exit(SETUP_FAILED);
        if (fd > 2) close(fd);
    }
    signal(SIGPIPE, SIG_DFL);
    execvp(cmd[0], cmd);
    int e = errno;
    fprintf(stderr, "%s: %s\n", cmd[0], e == ENOENT ? "command not found" : strerror(e));
    _exit(e == ENOENT ? 127 : 126);
}

/* Relays between the helper's stdio and the terminal's master until CMD has exited and its output has
 * stayed quiet for DRAIN_QUIET_MS (the relay holds the slave too, so the master never reads as closed). */
static void relay(int master, struct control *control, pid_t child) {
    char buf[16384];
    char pending[16384];
    size_t pending_len = 0, pending_off = 0;
    int input_open = 1, exited = 0;
    for (;;) {
        struct pollfd fds[4] = {
            {input_open && pending_len == 0 ? 0 : -1, POLLIN, 0},
            {master, (short)(POLLIN | (pending_len > 0 ? POLLOUT : 0)), 0},
            {control->fd, POLLIN, 0},
            {exited ? -1 : child_exited, POLLIN, 0},
        };
        int ready = poll(fds, 4, exited ? DRAIN_QUIET_MS : -1);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) die("poll");
        if (ready == 0) return;                                 /* exited, and nothing more to show */
        if (fds[3].revents) exited = 1;
        if (fds[2].revents && !read_control(control, child, master)) control->fd = -1;
        if (fds[0].revents) {
            ssize_t n = read(0, pending, sizeof pending);
            if (n > 0) { pending_len = (size_t)n; pending_off = 0; }
            else if (n == 0 || errno != EINTR) input_open = 0;  /* a terminal has no end of input to pass on */
        }
        if (fds[1].revents & POLLOUT && pending_len > 0) {
            ssize_t n = write(master, pending + pending_off, pending_len);
            if (n > 0) { pending_off += (size_t)n; pending_len -= (size_t)n; }
            else if (n < 0 && errno != EAGAIN && errno != EINTR) pending_len = 0;
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(master, buf, sizeof buf);
            if (n > 0) {
                if (write_all(1, buf, (size_t)n) < 0) return;  /* nobody reads the terminal any more */
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                if (exited) return;
                struct pollfd wait_exit = {child_exited, POLLIN, 0};
                poll(&wait_exit, 1, -1);
                exited = 1;
            }
        }
    }
}

/* Without a terminal: passes the daemon's signals on until CMD exits. */
static void wait_with_control(struct control *control, pid_t child) {
    for (;;) {
        struct pollfd fds[2] = {{control->fd, POLLIN, 0}, {child_exited, POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (fds[1].revents) return;
        if (fds[0].revents && !read_control(control, child, -1)) control->fd = -1;
    }
}

int guest_run_main(int argc, char **argv) {
    long status_fd = -1, control_fd = -1, cols = 0, rows = 0;
    int tty = 0;
    const char *cwd = "/workspace";
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) { i++; break; }
        if (i + 1 >= argc) fail("%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--status-fd")) status_fd = parse_number(a, v);
        else if (!strcmp(a, "--control-fd")) control_fd = parse_number(a, v);
        else if (!strcmp(a, "--cwd")) cwd = v;
        else if (!strcmp(a, "--tty") && i + 1 < argc) { tty = 1; cols = parse_number(a, v); rows = parse_number(a, argv[++i]); }
        else fail("unknown option %s", a);
    }
    if (status_fd <= 2 || i >= argc) fail("usage: nsinit run --status-fd N [--control-fd N] [--tty COLS ROWS] [--cwd DIR] -- CMD [ARGS...]");
    if (tty && (cols <= 0 || rows <= 0 || cols > 65535 || rows > 65535)) fail("--tty: not a terminal size: %ld %ld", cols, rows);
    char **cmd = &argv[i];
    int keep[2] = {(int)status_fd, (int)control_fd};
    close_inherited_fds(keep, control_fd > 2 ? 2 : 1);
    if (fcntl((int)status_fd, F_SETFD, FD_CLOEXEC) < 0) die("status fd %ld", status_fd);
    if (control_fd > 2 && fcntl((int)control_fd, F_SETFD, FD_CLOEXEC) < 0) die("control fd %ld", control_fd);
    struct control control = {.fd = control_fd > 2 ? (int)control_fd : -1};

    /* The workload runs as the same user: non-dumpable, it can neither trace the helper nor open its fds through /proc. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) die("PR_SET_DUMPABLE");
    if (chdir(cwd) < 0) die("chdir %s", cwd);
    char here[4096];
    if (getcwd(here, sizeof here)) setenv("PWD", here, 1);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("PR_SET_NO_NEW_PRIVS");
    if (install_sandbox_filter() < 0) die("install the seccomp filter");

    int master = -1;
    const char *slave = NULL;
    struct winsize size = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    if (tty) {
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) die("open a pseudo-terminal");
        slave = ptsname(master);
        if (!slave) die("ptsname");
        if (ioctl(master, TIOCSWINSZ, &size) < 0) die("set the terminal size");
        /* Held open by the relay: until CMD has the slave, the master would read as hung up. */
        if (open(slave, O_RDWR | O_NOCTTY | O_CLOEXEC) < 0) die("open %s", slave);
    }

    sigset_t children;
    sigemptyset(&children);
    sigaddset(&children, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &children, NULL) < 0) die("block SIGCHLD");
    child_exited = signalfd(-1, &children, SFD_CLOEXEC | SFD_NONBLOCK);
    if (child_exited < 0) die("signalfd");
    signal(SIGPIPE, SIG_IGN);

    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) become_command(cmd, slave, &size);

    if (tty) {
        fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
        relay(master, &control, child);
    } else {
        /* CMD has the pipes: the helper keeps none open, so their ends are CMD's alone. */
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) { dup2(null, 0); dup2(null, 1); close(null); }
        wait_with_control(&control, child);
    }

    int status;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) die("waitpid");
    }
    char line[32];
    int len = WIFSIGNALED(status) ? snprintf(line, sizeof line, "signal %d\n", WTERMSIG(status))
                                  : snprintf(line, sizeof line, "exit %d\n", WEXITSTATUS(status));
    if (write_all((int)status_fd, line, (size_t)len) < 0) {}
    return exit_like(status);
}
