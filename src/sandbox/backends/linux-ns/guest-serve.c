/*
 * The exec server of a gVisor sandbox (see guest.h): started by `nsinit init --exec-server`,
 * it runs each exec without a terminal as a child of its own, so such an exec costs one
 * spawn inside the sandbox instead of a `runsc exec` (a Go program that loads the sandbox's
 * record and asks its kernel) plus the `nsinit run` helper's own start and fork.
 *
 * Who it is: forked by init while init still holds CAP_SETUID, CAP_SETGID and CAP_SETPCAP,
 * it empties its bounding set, becomes the workload's uid and gid with no supplementary
 * groups and no capabilities, and turns non-dumpable (the workload, the same user, can
 * neither trace it nor open its fds through /proc).  It runs under the sandbox's seccomp
 * filter, which init installed before the fork, and every child inherits it.
 *
 * The daemon's end is the unix socket SOCKET (the daemon's, brought in with
 * --host-uds=open); every connection starts with one line the daemon checks:
 *
 *   "main <key>\n"        the server's own connection, made once; KEY came on init's
 *                         stdin from the daemon, before any workload ran.  On it the
 *                         daemon sends one frame per exec: a 4-byte big-endian length,
 *                         then NUL-terminated strings: TOKEN, CWD, ARGC, ARGC words,
 *                         and the environment's NAME=VALUE entries to the end.
 *   "<token> in|out|err|ctl\n"   the four connections of one exec, made before it starts:
 *                         in, out and err become the command's fds 0, 1 and 2 as they are;
 *                         on ctl the daemon sends "signal <n>\n" lines and the server
 *                         answers one line: "exit <code>", "signal <n>", or "chdir <why>"
 *                         when CWD cannot be entered (nothing ran).
 *
 * The command: 127 with "<cmd>: command not found" on its stderr (126 with the error)
 * when it cannot be executed, as `nsinit run` does.  When the daemon closes the main
 * connection (it stopped) the server exits; the commands it started run on, as the
 * sandbox's other processes do.  Nothing a workload sends reaches the server: it reads
 * only the connections it made itself.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest.h"

/* A frame as large as the daemon sends (its exec requests are smaller: argv and env of one HTTP body). */
#define MAX_FRAME (4u << 20)
#define MAX_EXECS 4096
#define TOKEN_HEX 64

struct running {
    pid_t pid;
    struct control ctl;     /* fd -1 once the daemon closed it: the end is then reported to nobody */
};

static struct running execs[MAX_EXECS];
static int running_count;

/* Empties the bounding set (dropping needs CAP_SETPCAP, so it comes before the other sets are cleared). */
void drop_bounding_set(void) {
    for (int cap = 0; cap < 64; cap++)
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) die("drop capability %d from the bounding set", cap);
}

/* Empties the effective, permitted and inheritable sets. */
void clear_capabilities(void) {
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &header, data) < 0) die("capset");
}

static int connect_daemon(const struct sockaddr_un *daemon, const char *hello) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (const struct sockaddr *)daemon, sizeof *daemon) < 0 || write_all(fd, hello, strlen(hello)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One line on ctl, never blocking: a daemon that stopped reading loses it, the server goes on. */
static void tell(int ctl, const char *line) {
    if (ctl >= 0 && send(ctl, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {}
}

/*
 * Starts the command on the exec's connections, as posix_spawn does it: the child shares the
 * server's memory until it execs (gVisor then makes one address space for it, not two:
 * a fork copies the server's and the exec throws that copy away; 19-37 ms against 6-18 ms
 * on an idle machine).  A session of its own, so a command's `kill 0` reaches its own
 * processes, never the server or other commands; no signal blocked, SIGPIPE as default.
 * Returns posix_spawn's error: the command could not be executed (nothing ran).
 */
static int spawn_command(int stdio[3], char **argv, char **env, const char *here, pid_t *pid) {
    size_t count = 0;
    while (env[count]) count++;
    char **envp = calloc(count + 2, sizeof *envp);
    char *pwd = malloc(strlen(here) + 5);
    if (!envp || !pwd) {
        free(envp);
        free(pwd);
        return ENOMEM;
    }
    sprintf(pwd, "PWD=%s", here);
    size_t used = 0;
    const char *path = NULL;
    for (size_t i = 0; i < count; i++) {
        if (!strncmp(env[i], "PATH=", 5)) path = env[i] + 5;
        if (strncmp(env[i], "PWD=", 4)) envp[used++] = env[i];
    }
    envp[used] = pwd;
    /* posix_spawnp looks argv[0] up in the caller's PATH: the command's own, as execvp in the command would. */
    if (path) setenv("PATH", path, 1);
    else unsetenv("PATH");

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    int error = posix_spawn_file_actions_init(&actions);
    if (!error) error = posix_spawnattr_init(&attributes);
    for (int k = 0; k < 3 && !error; k++) error = posix_spawn_file_actions_adddup2(&actions, stdio[k], k);
    if (!error) error = posix_spawnattr_setsigmask(&attributes, &none);
    if (!error) error = posix_spawnattr_setsigdefault(&attributes, &defaults);
    if (!error) error = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
    if (!error) error = posix_spawnp(pid, argv[0], &actions, &attributes, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    free(envp);
    free(pwd);
    return error;
}

/* Splits a frame into its strings; -1 when it is not one the daemon writes. */
static int parse_frame(char *frame, size_t size, char **token, char **cwd, char ***argv, char ***env) {
    if (size == 0 || frame[size - 1] != 0) return -1;
    size_t count = 0;
    for (size_t i = 0; i < size; i++) count += frame[i] == 0;
    char **strings = calloc(count + 1, sizeof *strings);
    if (!strings) return -1;
    char *at = frame;
    for (size_t i = 0; i < count; i++) {
        strings[i] = at;
        at += strlen(at) + 1;
    }
    char *end;
    long argc = count >= 3 ? strtol(strings[2], &end, 10) : 0;
    if (count < 3 || *strings[2] == 0 || *end != 0 || argc < 1 || (size_t)argc > count - 3 || strlen(strings[0]) != TOKEN_HEX || strspn(strings[0], "0123456789abcdef") != TOKEN_HEX) {
        free(strings);
        return -1;
    }
    *token = strings[0];
    *cwd = strings[1];
    /* argv and env point into one array: argv ends where a NULL is put, env is the rest. */
    char **rest = calloc(count - 3 + 2, sizeof *rest);
    if (!rest) {
        free(strings);
        return -1;
    }
    memcpy(rest, strings + 3, (size_t)argc * sizeof *rest);
    memcpy(rest + argc + 1, strings + 3 + argc, (count - 3 - (size_t)argc) * sizeof *rest);
    free(strings);
    *argv = rest;
    *env = rest + argc + 1;
    return 0;
}

/* Starts one exec: its four connections, then the command; the server's cwd stays /. */
static void start_exec(const struct sockaddr_un *daemon, char *frame, size_t size) {
    char *token, *cwd, **argv, **env;
    if (parse_frame(frame, size, &token, &cwd, &argv, &env) < 0) return;
    static const char *roles[4] = {"in", "out", "err", "ctl"};
    int fds[4] = {-1, -1, -1, -1};
    char hello[TOKEN_HEX + 8];
    int connected = 1;
    for (int k = 0; k < 4 && connected; k++) {
        snprintf(hello, sizeof hello, "%s %s\n", token, roles[k]);
        fds[k] = connect_daemon(daemon, hello);
        connected = fds[k] >= 0;
    }
    int ctl = fds[3];
    char here[4096] = "";
    if (!connected || running_count == MAX_EXECS) {
        /* The daemon's wait for the missing connections ends in an error of its own. */
    } else if (chdir(cwd) < 0 || !getcwd(here, sizeof here)) {
        char line[256];
        snprintf(line, sizeof line, "chdir %s\n", strerror(errno));
        tell(ctl, line);
    } else {
        pid_t child;
        int error = spawn_command(fds, argv, env, here, &child);
        if (error == 0) {
            execs[running_count++] = (struct running){.pid = child, .ctl = {.fd = ctl}};
            ctl = -1;
        } else {
            /* As a shell says it, and exits: 127 when there is no such command, 126 when it cannot run. */
            dprintf(fds[2], "%s: %s\n", argv[0], error == ENOENT ? "command not found" : strerror(error));
            tell(ctl, error == ENOENT ? "exit 127\n" : "exit 126\n");
        }
        if (chdir("/") < 0) die("chdir /");
    }
    for (int k = 0; k < 3; k++)
        if (fds[k] >= 0) close(fds[k]);
    if (ctl >= 0) close(ctl);
    free(argv);
}

/* Reports and forgets every exec whose command has ended. */
static void reap(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < running_count; i++) {
            if (execs[i].pid != pid) continue;
            char line[32];
            if (WIFSIGNALED(status)) snprintf(line, sizeof line, "signal %d\n", WTERMSIG(status));
            else snprintf(line, sizeof line, "exit %d\n", WEXITSTATUS(status));
            tell(execs[i].ctl.fd, line);
            if (execs[i].ctl.fd >= 0) close(execs[i].ctl.fd);
            execs[i] = execs[--running_count];
            break;
        }
    }
}

/* Who the server becomes: the workload's user, with nothing it could not give a command. */
static void become_workload(long uid, long gid) {
    if (setgroups(0, NULL) < 0) die("setgroups");
    if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0) die("setresgid %ld", gid);
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) die("PR_SET_KEEPCAPS");
    drop_bounding_set();
    if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) die("setresuid %ld", uid);
    /* A workload that is root inside keeps its uid, and would keep the capabilities too. */
    clear_capabilities();
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) die("PR_SET_DUMPABLE");
}

void guest_serve(const char *socket_path, long uid, long gid, char *key) {
    become_workload(uid, gid);
    struct sockaddr_un daemon;
    forward_address(socket_path, &daemon);
    char hello[160];
    snprintf(hello, sizeof hello, "main %s\n", key);
    int main_fd = connect_daemon(&daemon, hello);
    if (main_fd < 0) _exit(SETUP_FAILED);
    /* Taken once: the daemon refuses it from now on, and no copy stays here. */
    explicit_bzero(hello, sizeof hello);
    explicit_bzero(key, strlen(key));
    /* Init's stdio (the daemon's key and ready pipes, the sandbox log) stays with init until it is ready, not here. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) die("open /dev/null");
    for (int fd = 0; fd <= 2; fd++)
        if (dup2(null, fd) < 0) die("dup2 /dev/null");
    close(null);
    signal(SIGPIPE, SIG_IGN);

    sigset_t children;
    sigemptyset(&children);
    sigaddset(&children, SIGCHLD);
    sigprocmask(SIG_BLOCK, &children, NULL);
    int child_exited = signalfd(-1, &children, SFD_CLOEXEC | SFD_NONBLOCK);
    if (child_exited < 0) die("signalfd");

    static struct pollfd fds[MAX_EXECS + 2];
    char *frame = malloc(4 + MAX_FRAME);
    if (!frame) die("malloc");
    size_t have = 0;
    for (;;) {
        fds[0] = (struct pollfd){main_fd, POLLIN, 0};
        fds[1] = (struct pollfd){child_exited, POLLIN, 0};
        for (int i = 0; i < running_count; i++) fds[2 + i] = (struct pollfd){execs[i].ctl.fd, POLLIN, 0};
        int watched = running_count;
        if (poll(fds, (nfds_t)(2 + watched), -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        for (int i = 0; i < watched && i < running_count; i++)
            if (fds[2 + i].revents && execs[i].ctl.fd == fds[2 + i].fd && execs[i].ctl.fd >= 0 && !read_control(&execs[i].ctl, execs[i].pid, -1)) {
                close(execs[i].ctl.fd);
                execs[i].ctl.fd = -1;
            }
        if (fds[1].revents) {
            struct signalfd_siginfo info;
            while (read(child_exited, &info, sizeof info) > 0) {}
            reap();
        }
        if (!fds[0].revents) continue;
        ssize_t n = read(main_fd, frame + have, 4 + MAX_FRAME - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) _exit(0);
        have += (size_t)n;
        for (;;) {
            if (have < 4) break;
            uint32_t size = ((uint32_t)(unsigned char)frame[0] << 24) | ((uint32_t)(unsigned char)frame[1] << 16) | ((uint32_t)(unsigned char)frame[2] << 8) | (unsigned char)frame[3];
            if (size > MAX_FRAME) _exit(SETUP_FAILED);
            if (have < 4 + (size_t)size) break;
            start_exec(&daemon, frame + 4, size);
            memmove(frame, frame + 4 + size, have - 4 - size);
            have -= 4 + size;
        }
    }
}
