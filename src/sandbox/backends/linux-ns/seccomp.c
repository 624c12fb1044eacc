/*
 * The seccomp filter of every sandboxed process, as a classic BPF program built here
 * (no libseccomp).  bwrap loads it for the sandbox's held command (--seccomp FD) and
 * `nsinit exec` installs it before it execs each command: a filter is not inherited
 * through setns, only through fork and exec.
 *
 * What it refuses, and why (docs/security.md has the same list for users):
 *   - another architecture's system calls (i386 through int 0x80, x32, 32-bit arm):
 *     the numbers below mean other calls there.  The process is killed.
 *   - user namespaces: unshare and clone with CLONE_NEWUSER (EPERM), and clone3, whose
 *     flags live in memory a filter cannot read (ENOSYS, so libc falls back to clone).
 *     Inside a new user namespace a process gets every capability there and reaches
 *     kernel code (mounts, netfilter, ...) an unprivileged process never reaches.
 *   - kernel keyrings (keyctl, add_key, request_key): shared kernel state.
 *   - bpf, perf_event_open, userfaultfd: frequent parts of kernel exploits, and of
 *     no use to a build or an agent.
 *   - io_uring (ENOSYS; programs fall back to plain system calls): a large attack
 *     surface, and its operations bypass this filter.
 *   - mounts and namespace switches (mount, umount2, pivot_root, the fsopen/open_tree
 *     API, setns), module loading, kexec, syslog: need privileges the sandbox does
 *     not have; refused here as well so a kernel bug in their checks is out of reach.
 *   - ioctl TIOCSTI and TIOCLINUX: typing into, or reading from, a terminal.
 * Everything else is allowed.  ptrace and process_vm_* stay: the sandbox's pid
 * namespace gives them no pid outside the sandbox to act on.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp.h"

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#define X32_SYSCALL_BIT 0x40000000u
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "the sandbox's seccomp filter knows x86_64 and aarch64 only"
#endif

#if __BYTE_ORDER == __LITTLE_ENDIAN
#define ARG_LOW(n) (offsetof(struct seccomp_data, args) + 8 * (n))
#else
#define ARG_LOW(n) (offsetof(struct seccomp_data, args) + 8 * (n) + 4)
#endif

static const int refused[] = {
    __NR_keyctl, __NR_add_key, __NR_request_key,
    __NR_bpf, __NR_perf_event_open, __NR_userfaultfd,
    __NR_kexec_load,
#ifdef __NR_kexec_file_load
    __NR_kexec_file_load,
#endif
    __NR_init_module, __NR_finit_module, __NR_delete_module,
    __NR_mount, __NR_umount2, __NR_pivot_root, __NR_setns, __NR_syslog,
#ifdef __NR_open_tree
    __NR_open_tree, __NR_move_mount, __NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_fspick,
#endif
#ifdef __NR_mount_setattr
    __NR_mount_setattr,
#endif
};

static const int unavailable[] = {
#ifdef __NR_clone3
    __NR_clone3,
#endif
    __NR_io_uring_setup, __NR_io_uring_enter, __NR_io_uring_register,
};

/* ------------------------------------------------------------- assembler */

enum label { NEXT, ALLOW, REFUSE, UNAVAILABLE, KILL, CHECK_FLAGS, CHECK_IOCTL, LABELS };

#define MAX_INSNS 128
struct program {
    struct sock_filter insns[MAX_INSNS];
    unsigned len;
    int at[LABELS];
    struct { unsigned insn; enum label jt, jf; } jumps[MAX_INSNS];
    unsigned jump_count;
};

static void emit(struct program *p, struct sock_filter insn) {
    if (p->len < MAX_INSNS) p->insns[p->len] = insn;
    p->len++;
}

static void load(struct program *p, unsigned offset) {
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offset));
}

static void ret(struct program *p, unsigned value) {
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, value));
}

/* A conditional jump (BPF_JEQ, BPF_JGE, BPF_JSET against k) to labels resolved by link(). */
static void jump(struct program *p, unsigned op, unsigned k, enum label jt, enum label jf) {
    if (p->jump_count < MAX_INSNS) p->jumps[p->jump_count++] = (typeof(p->jumps[0])){p->len, jt, jf};
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | op | BPF_K, k, 0, 0));
}

static void place(struct program *p, enum label label) {
    p->at[label] = (int)p->len;
}

/* Fills in every jump's offsets: 0 on success, -1 when the program outgrew its bounds. */
static int link_program(struct program *p) {
    if (p->len > MAX_INSNS) return -1;
    for (unsigned i = 0; i < p->jump_count; i++) {
        unsigned insn = p->jumps[i].insn;
        enum label targets[2] = {p->jumps[i].jt, p->jumps[i].jf};
        unsigned char offsets[2];
        for (int side = 0; side < 2; side++) {
            int to = targets[side] == NEXT ? (int)insn + 1 : p->at[targets[side]];
            int offset = to - (int)insn - 1;
            if (to < 0 || offset < 0 || offset > 255) return -1;
            offsets[side] = (unsigned char)offset;
        }
        p->insns[insn].jt = offsets[0];
        p->insns[insn].jf = offsets[1];
    }
    return 0;
}

/* ----------------------------------------------------------------- filter */

static void build(struct program *p) {
    memset(p, 0, sizeof *p);
    for (int l = 0; l < LABELS; l++) p->at[l] = -1;

    load(p, offsetof(struct seccomp_data, arch));
    jump(p, BPF_JEQ, NATIVE_ARCH, NEXT, KILL);
    load(p, offsetof(struct seccomp_data, nr));
#ifdef X32_SYSCALL_BIT
    jump(p, BPF_JGE, X32_SYSCALL_BIT, KILL, NEXT);
#endif
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) jump(p, BPF_JEQ, (unsigned)refused[i], REFUSE, NEXT);
    for (size_t i = 0; i < sizeof unavailable / sizeof unavailable[0]; i++) jump(p, BPF_JEQ, (unsigned)unavailable[i], UNAVAILABLE, NEXT);
    jump(p, BPF_JEQ, __NR_unshare, CHECK_FLAGS, NEXT);
    jump(p, BPF_JEQ, __NR_clone, CHECK_FLAGS, NEXT);
    jump(p, BPF_JEQ, __NR_ioctl, CHECK_IOCTL, ALLOW);

    /* unshare(flags) and clone(flags, ...): only the low 32 bits carry flags. */
    place(p, CHECK_FLAGS);
    load(p, ARG_LOW(0));
    jump(p, BPF_JSET, CLONE_NEWUSER, REFUSE, ALLOW);

    /* ioctl(fd, request): the kernel reads request as 32 bits, whatever the high ones say. */
    place(p, CHECK_IOCTL);
    load(p, ARG_LOW(1));
    jump(p, BPF_JEQ, TIOCSTI, REFUSE, NEXT);
    jump(p, BPF_JEQ, TIOCLINUX, REFUSE, ALLOW);

    place(p, ALLOW);
    ret(p, SECCOMP_RET_ALLOW);
    place(p, REFUSE);
    ret(p, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA));
    place(p, UNAVAILABLE);
    ret(p, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA));
    place(p, KILL);
    ret(p, SECCOMP_RET_KILL_PROCESS);
}

const struct sock_fprog *sandbox_filter(void) {
    static struct program program;
    static struct sock_fprog fprog;
    if (fprog.filter) return &fprog;
    build(&program);
    if (link_program(&program) < 0) return NULL;
    fprog.len = (unsigned short)program.len;
    fprog.filter = program.insns;
    return &fprog;
}

int install_sandbox_filter(void) {
    const struct sock_fprog *filter = sandbox_filter();
    if (!filter) { errno = E2BIG; return -1; }
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, filter, 0, 0);
}

int sandbox_filter_memfd(void) {
    const struct sock_fprog *filter = sandbox_filter();
    if (!filter) { errno = E2BIG; return -1; }
    int fd = memfd_create("cleanroom-seccomp", MFD_CLOEXEC);
    if (fd < 0) return -1;
    size_t size = filter->len * sizeof filter->filter[0];
    if (write(fd, filter->filter, size) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0) {
        int e = errno;
        close(fd);
        errno = e ? e : EIO;
        return -1;
    }
    return fd;
}
