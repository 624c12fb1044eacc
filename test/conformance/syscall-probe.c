/*
 * Tries, from inside a sandbox (or under `nsinit seccomp`), the system calls the
 * sandbox's seccomp filter refuses, and a few it must allow, and prints one JSON object:
 * each call's outcome as "ok", the errno's name, or "killed:<signal>".  Every call has
 * invalid arguments (a bad fd, a missing path, an unknown type) or acts on a forked child
 * only, so it changes nothing even where no filter stops it (run as root on the host):
 * what matters is whether the kernel got to look at it (EBADF, ENOENT...) or the filter
 * answered first (EPERM, ENOSYS).
 *   cc -O2 -o syscall-probe syscall-probe.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int first = 1;

static void report(const char *name, const char *outcome) {
    printf("%s\"%s\":\"%s\"", first ? "{" : ",", name, outcome);
    first = 0;
}

static const char *errno_name(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case EBADF: return "EBADF";
    case ENOTTY: return "ENOTTY";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case E2BIG: return "E2BIG";
    case ENOKEY: return "ENOKEY";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: {
        static char text[32];
        snprintf(text, sizeof text, "errno %d", e);
        return text;
    }
    }
}

/* Runs the call in a child, so a call that succeeds (or a kill) changes nothing here. */
static void probe(const char *name, long (*call)(void)) {
    int pipefd[2];
    if (pipe(pipefd) < 0) return;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        errno = 0;
        long r = call();
        int e = r < 0 ? errno : 0;
        if (write(pipefd[1], &e, sizeof e) < 0) _exit(2);
        _exit(0);
    }
    close(pipefd[1]);
    int e = -1, status = 0;
    ssize_t n = read(pipefd[0], &e, sizeof e);
    close(pipefd[0]);
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
        char text[64];
        snprintf(text, sizeof text, "killed:%s", sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
        report(name, text);
    } else if (n != sizeof e) {
        report(name, "no answer");
    } else {
        report(name, e == 0 ? "ok" : errno_name(e));
    }
}

static long do_unshare_user(void) { return unshare(CLONE_NEWUSER); }
static long do_unshare_user_high_bits(void) { return syscall(SYS_unshare, 0x100000000UL | CLONE_NEWUSER); }
static long do_unshare_nothing(void) { return unshare(0); }
static long do_clone_user(void) {
    long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    return r;
}
static long do_clone_plain(void) {
    long r = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
    return r > 0 ? 0 : r;
}
static long do_clone3(void) { return syscall(SYS_clone3, NULL, 0); }
static long do_keyctl(void) { return syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0); }
static long do_add_key(void) { return syscall(SYS_add_key, "cleanroom-no-such-type", "cleanroom-probe", "x", 1, -3); }
static long do_request_key(void) { return syscall(SYS_request_key, "cleanroom-no-such-type", "cleanroom-probe", NULL, 0); }
static long do_bpf(void) { return syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, NULL, 0); }
static long do_perf_event_open(void) { return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0); }
static long do_userfaultfd(void) { return syscall(SYS_userfaultfd, ~0); }
static long do_io_uring_setup(void) { return syscall(SYS_io_uring_setup, 1, NULL); }
static long do_kexec_load(void) { return syscall(SYS_kexec_load, 0, 1, NULL, ~0UL); }
static long do_init_module(void) { return syscall(SYS_init_module, NULL, 0, NULL); }
static long do_finit_module(void) { return syscall(SYS_finit_module, -1, "", 0); }
static long do_delete_module(void) { return syscall(SYS_delete_module, "cleanroom_probe", 0); }
static long do_mount(void) { return syscall(SYS_mount, "none", "/nonexistent/cleanroom-probe", "cleanroom-no-such-fs", 0, NULL); }
static long do_setns(void) { return syscall(SYS_setns, -1, 0); }
static long do_syslog(void) { return syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0); }
static long do_tiocsti(void) { char c = 'x'; return syscall(SYS_ioctl, -1, TIOCSTI, &c); }
static long do_tiocsti_high_bits(void) { char c = 'x'; return syscall(SYS_ioctl, -1, 0x100000000UL | TIOCSTI, &c); }
static long do_tioclinux(void) { char c = 0; return syscall(SYS_ioctl, -1, TIOCLINUX, &c); }
static long do_ioctl_plain(void) { struct winsize w; return syscall(SYS_ioctl, -1, TIOCGWINSZ, &w); }
static long do_getpid(void) { return syscall(SYS_getpid) > 0 ? 0 : -1; }
#if defined(__x86_64__)
static long do_x32_getpid(void) { return syscall(0x40000000L | SYS_getpid); }
static long do_i386_getpid(void) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    return r < 0 ? (errno = (int)-r, -1) : 0;
}
#endif

int main(void) {
    probe("unshare_user", do_unshare_user);
    probe("unshare_user_high_bits", do_unshare_user_high_bits);
    probe("unshare_nothing", do_unshare_nothing);
    probe("clone_user", do_clone_user);
    probe("clone_plain", do_clone_plain);
    probe("clone3", do_clone3);
    probe("keyctl", do_keyctl);
    probe("add_key", do_add_key);
    probe("request_key", do_request_key);
    probe("bpf", do_bpf);
    probe("perf_event_open", do_perf_event_open);
    probe("userfaultfd", do_userfaultfd);
    probe("io_uring_setup", do_io_uring_setup);
    probe("kexec_load", do_kexec_load);
    probe("init_module", do_init_module);
    probe("finit_module", do_finit_module);
    probe("delete_module", do_delete_module);
    probe("mount", do_mount);
    probe("setns", do_setns);
    probe("syslog", do_syslog);
    probe("ioctl_tiocsti", do_tiocsti);
    probe("ioctl_tiocsti_high_bits", do_tiocsti_high_bits);
    probe("ioctl_tioclinux", do_tioclinux);
    probe("ioctl_plain", do_ioctl_plain);
    probe("getpid", do_getpid);
#if defined(__x86_64__)
    probe("x32_getpid", do_x32_getpid);
    probe("i386_getpid", do_i386_getpid);
#endif
    printf("}\n");
    return 0;
}
