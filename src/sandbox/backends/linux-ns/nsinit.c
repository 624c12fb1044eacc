/*
 * cleanroom-nsinit: the launch helper of cleanroom's linux-ns sandbox backend, also the
 * gvisor backend's (create --keep-root) and the helper inside its sandboxes (guest.h).
 *
 *   nsinit create  --repo REPO --state STATE [--uid U --gid G] [--map-uid R --map-gid RG]
 *                  [--userns] [--whiteout PATH]... [--whiteout-file FILE] [--bind-state DIR]
 *                  [--etc] [--git-config FILE] [--rootfs DIR] [--self-fd N] [--keep-root]
 *                  [--ro-bind SRC NAME]... [--keep-fd N]... [--seccomp-fd N] [--cgroup DIR]...
 *                  -- PROGRAM [ARGS...]
 *   nsinit exec    --pid N [--start-time TICKS] [--mntns INODE] [--host-uid U --host-gid G]
 *                  [--uid 1000 --gid 1000] [--cwd DIR] [--cgroup DIR]... -- CMD [ARGS...]
 *   nsinit listen  --pid N [--start-time TICKS] [--host-uid U --host-gid G] --port P
 *   nsinit seccomp -- CMD [ARGS...]
 *   nsinit hold    READY_FD
 *   nsinit init | run ... | forward ...    inside a gVisor sandbox: see guest.h
 *
 * Setup errors print "nsinit: <step>: <error>" on stderr and exit 125.
 * Build: cc -O2 -Wall -Werror -o cleanroom-nsinit *.c   (glibc >= 2.36 for the mount API)
 *
 * Every mode first closes each fd above 2 it was not told to keep (create: --keep-fd;
 * listen: NODE_CHANNEL_FD): a descriptor the caller inherited from whoever started it
 * (a shell's `exec 200<dir`) must never reach a sandbox.
 *
 * --cgroup DIR (create and exec, repeatable): right after closing inherited fds, nsinit
 * moves itself into the cgroup DIR, so every process it starts is limited by it from its
 * first instruction: it writes 0 to DIR/tasks on a v1 hierarchy (its one thread is all of
 * it), else to DIR/cgroup.procs.  Needs root; a failure is a setup error.
 *
 * create
 * ------
 * Builds the /workspace overlay inside a PRIVATE mount namespace, drops privileges
 * and execs PROGRAM (bwrap).  nsinit becomes PROGRAM and leaves no process behind.
 * Every mount lives only in that namespace, so all of them vanish with the
 * sandbox's last process, even when the daemon crashes.
 *
 *   REPO   host directory used as the overlay's read-only lower layer; never written.
 *   STATE  per-sandbox dir, created by the caller: root:G 0710 in root mode, the
 *          caller's 0700 in userns mode.  nsinit creates in it:
 *            lower   mount point of the lower layer (empty again once the overlay is up)
 *            upper   overlay upper dir, U:G          work   overlay work dir (the kernel makes
 *            merged  the overlay                             work/work mode 000)
 *            home    $HOME, U:G 0700                 tmp    /tmp, U:G 01777
 *
 *   Root mode (real uid 0, no --userns): U:G (> 0) is the host uid/gid the sandbox runs
 *   as.  REPO is cloned with open_tree, made read-only and idmapped so that files owned
 *   by R:RG (default: REPO's owner) show as U:G, and used as the overlay's lower.  Files
 *   of any other owner or group show as 65534: readable, but neither modifiable nor
 *   deletable.  Needs kernel >= 5.19 and a filesystem with idmapped mounts (ext4, xfs,
 *   btrfs, tmpfs >= 6.3; not NFS).  Then setgroups(0), setresgid(G), setresuid(U).
 *
 *   Userns mode (non-root caller, or --userns): unshare a user namespace mapping ns 0
 *   to the caller (setgroups denied) plus a mount namespace, and mount the overlay with
 *   a bind of REPO as the lower and "userxattr" (without it, rmdir/rename of a lower
 *   directory fails with EIO).  REPO should be owned by the caller: files of other
 *   owners show as 65534 and cannot be modified.
 *
 *   --whiteout PATH     hide REPO/PATH (relative) in /workspace: a 0/0 character device
 *                       in upper is an overlay whiteout.  Repeatable.
 *   --whiteout-file F   the same for each NUL-separated path in F (no ARG_MAX limit).
 *   --bind-state DIR    bind STATE onto DIR (e.g. /mnt) in the private namespace.  PROGRAM
 *                       runs as U, which may not traverse STATE's ancestors (a root daemon
 *                       keeps STATE under /root), and bwrap resolves its sources by path.
 *   --etc               mount STATE/etc-merged: a read-only overlay of STATE/etc (the
 *                       generated files) over the host's /etc, for PROGRAM to bind at /etc.
 *                       No mount point is a host dentry, so a host that renames a new file
 *                       over /etc/passwd changes nothing the sandbox sees at /etc/passwd.
 *   --git-config FILE   show FILE (a redacted copy) as REPO/.git/config: it is copied into
 *                       upper, with the lower file's mode and (mapped) owner.
 *   --rootfs DIR        an image's root filesystem, never written: mounted at STATE/rootfs as
 *                       an overlay of DIR (read-only, the lower) and STATE/rootfs-upper (the
 *                       sandbox's writes), for PROGRAM to bind at /.  Root mode idmaps DIR as
 *                       it does REPO (DIR's owner shows as U:G); userns mode binds it read-only.
 *                       With --etc, STATE/etc-merged is then STATE/etc over DIR/etc (opened
 *                       without following a symlink), or STATE/etc alone when DIR has no /etc.
 *   --self-fd N         put a sealed copy of this program (a memfd) on fd N for PROGRAM: what
 *                       an image sandbox holds as its init's command (`/proc/self/fd/N hold`),
 *                       since an image may have no shell.  A copy, so that nothing in the
 *                       sandbox can reach the file on the host (as /proc/<pid>/exe would).
 *   --keep-root         root mode: exec PROGRAM as root, without the drop to U:G (runsc,
 *                       which starts the gVisor sandbox as U itself: a user namespace in
 *                       its OCI spec maps the sandbox's root to U).  U:G still owns upper,
 *                       home and tmp and is what the idmapped lower shows.
 *   --ro-bind SRC NAME  show the host directory SRC at STATE/NAME, read-only, nosuid, nodev
 *                       (the shared agent cache's entry), for PROGRAM to bind where the
 *                       sandbox sees it: like STATE itself, SRC may sit below a directory
 *                       U cannot traverse.  NAME is one path component.  Repeatable.
 *   --keep-fd N         leave fd N open for PROGRAM (bwrap's status fd, the ready fd).
 *   --seccomp-fd N      put the sandbox's seccomp program (seccomp.c) on fd N, for
 *                       `bwrap --seccomp N`.
 *
 *   PROGRAM must not be setuid: no_new_privs is set before the exec.
 *
 * hold
 * ----
 * The command an image sandbox's init holds: closes every fd above 2 but READY_FD, writes
 * "ready" to it, closes it, and pauses until the sandbox is killed.  Static, like the
 * prebuilt nsinit, so it runs in any root filesystem.
 *
 * exec
 * ----
 * Runs CMD inside the sandbox whose init is host pid N, as uid:gid 1000:1000 with no
 * capabilities, no_new_privs and the sandbox's seccomp filter (a filter does not pass
 * through setns: nsinit installs it itself), with the environment nsinit was given (the
 * caller passes a clean one) plus PWD.  Exit status: CMD's; when CMD is killed by a signal,
 * nsinit kills itself with the same signal; 127/126 when CMD cannot be executed.
 * Signals sent to nsinit with kill() are forwarded to CMD.  With a controlling tty on
 * stdin, CMD leads its own session on it inside the sandbox (job control, ^C, SIGWINCH
 * reach CMD only).
 *
 *   --start-time, --mntns   field 22 of /proc/N/stat and the inode of /proc/N/ns/mnt at
 *                           create time: a recycled pid N is never entered by mistake.
 *   --host-uid/--host-gid   root caller: become the sandbox's host uid first, so nothing
 *                           happens with more rights than the sandbox has.
 *
 * Why not nsenter + setpriv: bwrap with --dev nests two user namespaces (A: 0 -> U, owns
 * mnt/pid/net/...; B: 1000 -> A's 0, holds the processes).  An unprivileged caller must
 * join A, then the other namespaces, then B, and nsenter joins only one user namespace;
 * and host root, once in B, loses every capability at the next execve.  nsinit does the
 * joins and the credential drop in one process, before any exec.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "guest.h"
#include "seccomp.h"

void die(const char *step, ...) {
    int e = errno;
    va_list ap;
    fputs("nsinit: ", stderr);
    va_start(ap, step);
    vfprintf(stderr, step, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", strerror(e));
    exit(SETUP_FAILED);
}

/* A usage error: the caller (the daemon) passed something nsinit cannot use. */
void fail(const char *fmt, ...) {
    va_list ap;
    fputs("nsinit: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(SETUP_FAILED);
}

long parse_number(const char *option, const char *value) {
    char *end;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (errno || end == value || *end || n < 0) fail("%s: not a non-negative number: %s", option, value);
    return n;
}

static void path_join(char *out, size_t size, const char *dir, const char *name) {
    if ((size_t)snprintf(out, size, "%s/%s", dir, name) >= size) {
        errno = ENAMETOOLONG;
        die("path %s/%s", dir, name);
    }
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) die("open %s", path);
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die("write %s", path);
    close(fd);
}

/* STATE/name as a directory owned by uid:gid with mode; an existing non-directory is an error */
static void make_state_dir(const char *state, const char *name, uid_t uid, gid_t gid, mode_t mode) {
    char path[PATH_MAX];
    struct stat st;
    path_join(path, sizeof path, state, name);
    if (mkdir(path, mode) < 0 && errno != EEXIST) die("mkdir %s", path);
    if (lstat(path, &st) < 0) die("lstat %s", path);
    if (!S_ISDIR(st.st_mode)) { errno = ENOTDIR; die("%s", path); }
    if (lchown(path, uid, gid) < 0) die("chown %s", path);
    if (chmod(path, mode) < 0) die("chmod %s", path);
}

static void close_fds_between(unsigned first, unsigned last) {
    if (last > INT_MAX) last = INT_MAX;                 /* no fd is higher; gVisor refuses a last above it */
    if (first > last) return;
    if (close_range(first, last, 0) == 0) return;
    if (errno != ENOSYS) die("close_range %u-%u", first, last);
    /* kernels before 5.9: every fd below the limit */
    struct rlimit limit;
    unsigned top = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 1u << 20 ? (unsigned)limit.rlim_cur : 1u << 20;
    for (unsigned fd = first; fd <= last && fd < top; fd++) close((int)fd);
}

static int compare_fds(const void *a, const void *b) {
    return *(const int *)a - *(const int *)b;
}

/* Closes every fd above 2 but those in keep (which it sorts). */
void close_inherited_fds(int *keep, int count) {
    unsigned next = 3;
    if (count > 0) qsort(keep, (size_t)count, sizeof *keep, compare_fds);
    for (int k = 0; k < count; k++) {
        if (keep[k] < (int)next) continue;
        close_fds_between(next, (unsigned)keep[k] - 1);
        next = (unsigned)keep[k] + 1;
    }
    close_fds_between(next, ~0u);
}

/* ----------------------------------------------------------------- cgroups */

/*
 * Moves this process into each cgroup directory (one per v1 hierarchy, or the v2 one).
 * On v1 it moves its thread through `tasks`: nsinit never starts a thread, so that is the
 * whole process, and the kernel then skips the machine-wide lock a `cgroup.procs` write
 * takes, whose first taking after a quiet spell waits an RCU grace period (5-15 ms here).
 * v2 has `tasks` no more, and takes `cgroup.procs`.
 */
static void join_cgroups(const char **dirs, int count) {
    char path[PATH_MAX];
    for (int k = 0; k < count; k++) {
        if (dirs[k][0] != '/') fail("--cgroup needs an absolute path: %s", dirs[k]);
        path_join(path, sizeof path, dirs[k], "tasks");
        if (access(path, F_OK) < 0 && errno == ENOENT) path_join(path, sizeof path, dirs[k], "cgroup.procs");
        write_file(path, "0\n");
    }
}

/* ------------------------------------------------------------------ create */

struct create_options {
    const char *repo, *state, *bind_state, *whiteout_file, *git_config, *rootfs;
    long uid, gid, map_uid, map_gid, self_fd;
    int userns, etc, keep_root;
    const char **whiteouts;
    int whiteout_count;
    const char **ro_bind_sources, **ro_bind_names;
    int ro_bind_count;
    int *keep_fds;
    int keep_fd_count;
    long seccomp_fd;
    const char **cgroups;
    int cgroup_count;
    char **program;
};

/* The owner a directory copied up from the lower would get: the idmap's view in root mode. */
struct owner_map {
    int active;
    uid_t from_uid, to_uid;
    gid_t from_gid, to_gid;
};

/* A user namespace fd whose maps are "R U 1" / "RG G 1", for MOUNT_ATTR_IDMAP: a child
 * unshares it and waits; we write its maps, open its ns file, then kill it. */
static int make_idmap_userns(const struct owner_map *m) {
    int ready[2];
    char text[64], path[64];
    if (pipe2(ready, O_CLOEXEC) < 0) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (unshare(CLONE_NEWUSER) < 0) _exit(1);
        if (write(ready[1], "x", 1) != 1) _exit(1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char c;
    if (read(ready[0], &c, 1) != 1) { errno = ECHILD; die("idmap helper: unshare(CLONE_NEWUSER)"); }
    close(ready[0]);
    snprintf(path, sizeof path, "/proc/%d/uid_map", pid);
    snprintf(text, sizeof text, "%u %u 1\n", m->from_uid, m->to_uid);
    write_file(path, text);
    snprintf(path, sizeof path, "/proc/%d/gid_map", pid);
    snprintf(text, sizeof text, "%u %u 1\n", m->from_gid, m->to_gid);
    write_file(path, text);
    snprintf(path, sizeof path, "/proc/%d/ns/user", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open %s", path);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return fd;
}

/* Mounts a read-only clone of repo on lower, idmapped so its owner shows as U:G. */
static void mount_idmapped_lower(const char *repo, const char *lower, const struct owner_map *m) {
    int userns = make_idmap_userns(m);
    int tree = open_tree(AT_FDCWD, repo, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0) die("open_tree %s", repo);
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        .userns_fd = userns,
    };
    if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
        die("mount_setattr(MOUNT_ATTR_IDMAP) on %s (EINVAL: its filesystem has no idmapped mounts)", repo);
    if (move_mount(tree, "", AT_FDCWD, lower, MOVE_MOUNT_F_EMPTY_PATH) < 0) die("move_mount to %s", lower);
    close(tree);
    close(userns);
}

/* The overlay of `lower` (a mount point in STATE) and STATE/<layer>upper at STATE/<merged>, with
 * STATE/<layer>work: both layers are reached through STATE, so the repo's (or image's) path
 * never appears in the options, where ',' and ':' are separators. */
static void mount_overlay(const char *state, const char *lower, const char *layer, const char *merged_name, const char *extra) {
    char opts[3 * PATH_MAX], merged[PATH_MAX];
    if (strpbrk(state, ",:\\")) fail("the state dir path cannot hold ',' ':' or '\\' (overlay options): %s", state);
    if ((size_t)snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s/%supper,workdir=%s/%swork%s",
                         lower, state, layer, state, layer, extra) >= sizeof opts) {
        errno = ENAMETOOLONG;
        die("overlay options");
    }
    path_join(merged, sizeof merged, state, merged_name);
    if (mount("overlay", merged, "overlay", MS_NOSUID | MS_NODEV, opts) < 0) die("mount overlay (%s)", opts);
}

/* Whiteout paths come from the daemon's own git listing; anything that could step
 * outside upper is a caller bug. */
static void check_relative(const char *path) {
    if (!*path || *path == '/') fail("whiteout path must be relative: %s", path);
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            fail("whiteout path has an empty, . or .. component: %s", path);
        p += n;
        if (*p == '/') p++;
    }
}

/* The owner a copy-up would give a file of the lower layer. */
static void mapped_owner(const struct stat *st, const struct owner_map *m, uid_t *uid, gid_t *gid) {
    *uid = m->active && st->st_uid == m->from_uid ? m->to_uid : st->st_uid;
    *gid = m->active && st->st_gid == m->from_gid ? m->to_gid : st->st_gid;
}

/* Creates rel's parent directories in upper with the lower directories' modes and (mapped)
 * owners, as a copy-up would.  0 when rel has nothing below it to act on: a parent that is
 * not a real directory in the repo, or one hidden already. */
static int make_upper_parents(const char *repo, const char *upper, char *rel, const struct owner_map *m) {
    char lower_path[PATH_MAX], upper_path[PATH_MAX];
    for (char *slash = strchr(rel, '/'); slash; slash = strchr(slash + 1, '/')) {
        struct stat st, made;
        *slash = 0;
        path_join(lower_path, sizeof lower_path, repo, rel);
        path_join(upper_path, sizeof upper_path, upper, rel);
        if (lstat(lower_path, &st) < 0 || !S_ISDIR(st.st_mode)) return 0;
        if (mkdir(upper_path, st.st_mode & 07777) == 0) {
            uid_t uid;
            gid_t gid;
            mapped_owner(&st, m, &uid, &gid);
            if (m->active && lchown(upper_path, uid, gid) < 0) die("chown %s", upper_path);
            if (chmod(upper_path, st.st_mode & 07777) < 0) die("chmod %s", upper_path);
        } else if (errno != EEXIST) {
            die("mkdir %s", upper_path);
        } else if (lstat(upper_path, &made) == 0 && !S_ISDIR(made.st_mode)) {
            return 0;
        }
        *slash = '/';
    }
    return 1;
}

/* Hides repo/rel in the overlay.  A path whose parent is not a real directory in the
 * repo has nothing to hide and is skipped. */
static void add_whiteout(const char *repo, const char *upper, const char *rel, const struct owner_map *m) {
    char path[PATH_MAX], upper_path[PATH_MAX];
    size_t len = strlen(rel);
    while (len > 1 && rel[len - 1] == '/') len--;        /* git lists directories as "dir/" */
    if (len >= sizeof path) { errno = ENAMETOOLONG; die("whiteout %s", rel); }
    memcpy(path, rel, len);
    path[len] = 0;
    check_relative(path);
    if (!make_upper_parents(repo, upper, path, m)) return;
    path_join(upper_path, sizeof upper_path, upper, path);
    if (mknod(upper_path, S_IFCHR, makedev(0, 0)) < 0 && errno != EEXIST) die("whiteout %s", upper_path);
}

/* Shows `source` as repo/.git/config: a regular file in upper with the lower file's mode
 * and (mapped) owner.  Nothing to replace when the repo has no such regular file. */
static void replace_git_config(const char *repo, const char *upper, const char *source, const struct owner_map *m) {
    char rel[] = ".git/config", lower_path[PATH_MAX], upper_path[PATH_MAX], buffer[65536];
    struct stat st;
    path_join(lower_path, sizeof lower_path, repo, rel);
    if (lstat(lower_path, &st) < 0 || !S_ISREG(st.st_mode)) return;
    if (!make_upper_parents(repo, upper, rel, m)) return;
    path_join(upper_path, sizeof upper_path, upper, rel);
    int in = open(source, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0) die("open %s", source);
    int out = open(upper_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) die("create %s", upper_path);
    ssize_t n;
    while ((n = read(in, buffer, sizeof buffer)) > 0)
        if (write(out, buffer, (size_t)n) != n) die("write %s", upper_path);
    if (n < 0) die("read %s", source);
    uid_t uid;
    gid_t gid;
    mapped_owner(&st, m, &uid, &gid);
    if (m->active && fchown(out, uid, gid) < 0) die("chown %s", upper_path);
    if (fchmod(out, st.st_mode & 0777) < 0) die("chmod %s", upper_path);
    close(out);
    close(in);
}

static void add_whiteouts_from_file(const char *repo, const char *upper, const char *file, const struct owner_map *m) {
    FILE *f = fopen(file, "re");
    if (!f) die("open %s", file);
    char *entry = NULL;
    size_t size = 0;
    ssize_t n;
    while ((n = getdelim(&entry, &size, '\0', f)) > 0) {
        if (entry[n - 1] == '\0') n--;
        entry[n] = 0;
        if (n > 0) add_whiteout(repo, upper, entry, m);
    }
    if (ferror(f)) die("read %s", file);
    free(entry);
    fclose(f);
}

static void prepare_upper(const struct create_options *o, const struct owner_map *m) {
    char upper[PATH_MAX];
    path_join(upper, sizeof upper, o->state, "upper");
    for (int k = 0; k < o->whiteout_count; k++) add_whiteout(o->repo, upper, o->whiteouts[k], m);
    if (o->whiteout_file) add_whiteouts_from_file(o->repo, upper, o->whiteout_file, m);
    if (o->git_config) replace_git_config(o->repo, upper, o->git_config, m);
}

/* STATE/etc (the generated files) over the host's /etc, or over the image's (--rootfs: its
 * /etc in the mounted lower, opened without following a symlink), read-only, at STATE/etc-merged. */
static void mount_etc(const struct create_options *o) {
    char opts[2 * PATH_MAX], merged[PATH_MAX], below[PATH_MAX], generated[PATH_MAX];
    int image_etc = -1;
    if (!o->etc) return;
    path_join(merged, sizeof merged, o->state, "etc-merged");
    snprintf(below, sizeof below, "/etc");
    if (o->rootfs) {
        char lower[PATH_MAX];
        path_join(lower, sizeof lower, o->state, "rootfs-lower");
        int root = open(lower, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0) die("open %s", lower);
        image_etc = openat(root, "etc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (image_etc < 0 && errno != ENOENT && errno != ENOTDIR && errno != ELOOP) die("open the image's /etc");
        close(root);
        if (image_etc < 0) {
            /* the image has no /etc directory: the generated files alone */
            path_join(generated, sizeof generated, o->state, "etc");
            if (mount(generated, merged, NULL, MS_BIND, NULL) < 0) die("bind %s on %s", generated, merged);
            if (mount(NULL, merged, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) die("remount %s read-only", merged);
            return;
        }
        snprintf(below, sizeof below, "/proc/self/fd/%d", image_etc);
    }
    if ((size_t)snprintf(opts, sizeof opts, "lowerdir=%s/etc:%s", o->state, below) >= sizeof opts) {
        errno = ENAMETOOLONG;
        die("/etc overlay options");
    }
    if (mount("overlay", merged, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, opts) < 0) die("mount /etc overlay (%s)", opts);
    if (image_etc >= 0) close(image_etc);
}

/* STATE/rootfs: the image's root filesystem (--rootfs) under the sandbox's own upper layer.
 * `m` (root mode) idmaps it; without, a read-only bind is the lower (userns mode). */
static void mount_rootfs(const struct create_options *o, const struct owner_map *m) {
    char lower[PATH_MAX];
    if (!o->rootfs) return;
    path_join(lower, sizeof lower, o->state, "rootfs-lower");
    if (m) {
        mount_idmapped_lower(o->rootfs, lower, m);
    } else {
        if (mount(o->rootfs, lower, NULL, MS_BIND | MS_REC, NULL) < 0) die("bind %s on %s", o->rootfs, lower);
        if (mount(NULL, lower, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) die("remount %s read-only", lower);
    }
    mount_overlay(o->state, lower, "rootfs-", "rootfs", m ? "" : ",userxattr");
}

/* The image's lower is held by the overlays made of it: its mount point can go. */
static void unmount_rootfs_lower(const struct create_options *o) {
    char lower[PATH_MAX];
    if (!o->rootfs) return;
    path_join(lower, sizeof lower, o->state, "rootfs-lower");
    if (umount2(lower, MNT_DETACH) < 0) die("umount %s", lower);
}

static void make_rootfs_dirs(const struct create_options *o, uid_t uid, gid_t gid) {
    if (!o->rootfs) return;
    make_state_dir(o->state, "rootfs-lower", 0, 0, 0755);
    make_state_dir(o->state, "rootfs", 0, 0, 0755);
    make_state_dir(o->state, "rootfs-work", 0, 0, 0700);
    make_state_dir(o->state, "rootfs-upper", uid, gid, 0755);
}

/* A sealed memfd copy of this program on fd n, left open (no FD_CLOEXEC) for PROGRAM. */
static void put_self_on_fd(long n) {
    char buffer[65536];
    int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (exe < 0) die("open /proc/self/exe");
    int copy = memfd_create("cleanroom-nsinit", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (copy < 0) die("memfd_create");
    ssize_t got;
    while ((got = read(exe, buffer, sizeof buffer)) > 0)
        if (write(copy, buffer, (size_t)got) != got) die("copy nsinit into a memfd");
    if (got < 0) die("read /proc/self/exe");
    close(exe);
    if (fchmod(copy, 0555) < 0) die("fchmod the memfd");
    if (fcntl(copy, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) die("seal the memfd");
    if (copy == (int)n) {
        if (fcntl(copy, F_SETFD, 0) < 0) die("fcntl the memfd's fd");
    } else {
        if (dup2(copy, (int)n) < 0) die("dup2 the memfd to fd %ld", n);
        close(copy);
    }
}

/* Each --ro-bind: a clone of SRC alone (not what is mounted below it), made read-only, nosuid
 * and nodev before it is attached at STATE/NAME, so it is never writable, not even for a moment. */
static void bind_read_only(const struct create_options *o) {
    char target[PATH_MAX];
    for (int k = 0; k < o->ro_bind_count; k++) {
        const char *name = o->ro_bind_names[k];
        if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
            fail("--ro-bind NAME must be one path component: %s", name);
        if (o->ro_bind_sources[k][0] != '/') fail("--ro-bind SRC must be absolute: %s", o->ro_bind_sources[k]);
        make_state_dir(o->state, name, 0, 0, 0755);
        path_join(target, sizeof target, o->state, name);
        int tree = open_tree(AT_FDCWD, o->ro_bind_sources[k], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (tree < 0) die("open_tree %s", o->ro_bind_sources[k]);
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
        if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) die("mount_setattr(read-only) on %s", o->ro_bind_sources[k]);
        if (move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0) die("move_mount to %s", target);
        close(tree);
    }
}

static void bind_state(const struct create_options *o) {
    if (o->bind_state && mount(o->state, o->bind_state, NULL, MS_BIND | MS_REC, NULL) < 0)
        die("bind %s on %s", o->state, o->bind_state);
}

static void create_root_mode(const struct create_options *o) {
    uid_t uid = (uid_t)o->uid;
    gid_t gid = (gid_t)o->gid;
    struct stat st;
    char lower[PATH_MAX];
    if (o->uid <= 0 || o->gid <= 0) fail("root mode needs --uid and --gid > 0");
    if (stat(o->repo, &st) < 0) die("stat %s", o->repo);
    struct owner_map m = {
        .active = 1,
        .from_uid = o->map_uid >= 0 ? (uid_t)o->map_uid : st.st_uid, .to_uid = uid,
        .from_gid = o->map_gid >= 0 ? (gid_t)o->map_gid : st.st_gid, .to_gid = gid,
    };

    make_state_dir(o->state, "lower", 0, 0, 0755);
    make_state_dir(o->state, "merged", 0, 0, 0755);
    if (o->etc) make_state_dir(o->state, "etc-merged", 0, 0, 0755);
    make_state_dir(o->state, "work", 0, 0, 0700);
    make_state_dir(o->state, "upper", uid, gid, 0755);
    make_state_dir(o->state, "home", uid, gid, 0700);
    make_state_dir(o->state, "tmp", uid, gid, 01777);
    make_rootfs_dirs(o, uid, gid);
    prepare_upper(o, &m);

    if (unshare(CLONE_NEWNS) < 0) die("unshare(CLONE_NEWNS)");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / rprivate");
    path_join(lower, sizeof lower, o->state, "lower");
    mount_idmapped_lower(o->repo, lower, &m);
    mount_overlay(o->state, lower, "", "merged", "");
    /* the overlay holds its own clone of the layer: the mount point can go */
    if (umount2(lower, MNT_DETACH) < 0) die("umount %s", lower);
    if (o->rootfs) {
        struct stat image;
        if (stat(o->rootfs, &image) < 0) die("stat %s", o->rootfs);
        struct owner_map im = {.active = 1, .from_uid = image.st_uid, .to_uid = uid, .from_gid = image.st_gid, .to_gid = gid};
        mount_rootfs(o, &im);
    }
    mount_etc(o);
    unmount_rootfs_lower(o);
    bind_read_only(o);
    bind_state(o);
    if (o->keep_root) return;

    if (setgroups(0, NULL) < 0) die("setgroups");
    if (setresgid(gid, gid, gid) < 0) die("setresgid %u", gid);
    if (setresuid(uid, uid, uid) < 0) die("setresuid %u", uid);
    if (setuid(0) == 0) { errno = EPERM; die("privileges still present after the drop"); }
}

static void create_userns_mode(const struct create_options *o) {
    char map[64];
    uid_t uid = getuid();
    gid_t gid = getgid();
    struct owner_map none = {0};
    char lower[PATH_MAX];
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) die("unshare(CLONE_NEWUSER|CLONE_NEWNS)");
    write_file("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %u 1\n", uid);
    write_file("/proc/self/uid_map", map);
    snprintf(map, sizeof map, "0 %u 1\n", gid);
    write_file("/proc/self/gid_map", map);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / rprivate");
    make_state_dir(o->state, "lower", 0, 0, 0755);
    make_state_dir(o->state, "merged", 0, 0, 0755);
    if (o->etc) make_state_dir(o->state, "etc-merged", 0, 0, 0755);
    make_state_dir(o->state, "work", 0, 0, 0700);
    make_state_dir(o->state, "upper", 0, 0, 0755);
    make_state_dir(o->state, "home", 0, 0, 0700);
    make_state_dir(o->state, "tmp", 0, 0, 01777);
    make_rootfs_dirs(o, 0, 0);
    prepare_upper(o, &none);    /* after unshare: a 0/0 whiteout needs ns-root */
    path_join(lower, sizeof lower, o->state, "lower");
    if (mount(o->repo, lower, NULL, MS_BIND | MS_REC, NULL) < 0) die("bind %s on %s", o->repo, lower);
    mount_overlay(o->state, lower, "", "merged", ",userxattr");
    if (umount2(lower, MNT_DETACH) < 0) die("umount %s", lower);
    mount_rootfs(o, NULL);
    mount_etc(o);
    unmount_rootfs_lower(o);
    bind_read_only(o);
    bind_state(o);
}

static int create_main(int argc, char **argv) {
    struct create_options o = {.uid = -1, .gid = -1, .map_uid = -1, .map_gid = -1, .seccomp_fd = -1, .self_fd = -1};
    o.whiteouts = calloc((size_t)argc, sizeof *o.whiteouts);
    o.keep_fds = calloc((size_t)argc, sizeof *o.keep_fds);
    o.ro_bind_sources = calloc((size_t)argc, sizeof *o.ro_bind_sources);
    o.ro_bind_names = calloc((size_t)argc, sizeof *o.ro_bind_names);
    o.cgroups = calloc((size_t)argc, sizeof *o.cgroups);
    if (!o.whiteouts || !o.keep_fds || !o.ro_bind_sources || !o.ro_bind_names || !o.cgroups) die("calloc");
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) { i++; break; }
        if (!strcmp(a, "--userns")) { o.userns = 1; continue; }
        if (!strcmp(a, "--etc")) { o.etc = 1; continue; }
        if (!strcmp(a, "--keep-root")) { o.keep_root = 1; continue; }
        if (!strcmp(a, "--ro-bind")) {
            if (i + 2 >= argc) fail("--ro-bind needs SRC and NAME");
            o.ro_bind_sources[o.ro_bind_count] = argv[++i];
            o.ro_bind_names[o.ro_bind_count++] = argv[++i];
            continue;
        }
        if (i + 1 >= argc) fail("%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--repo")) o.repo = v;
        else if (!strcmp(a, "--state")) o.state = v;
        else if (!strcmp(a, "--uid")) o.uid = parse_number(a, v);
        else if (!strcmp(a, "--gid")) o.gid = parse_number(a, v);
        else if (!strcmp(a, "--map-uid")) o.map_uid = parse_number(a, v);
        else if (!strcmp(a, "--map-gid")) o.map_gid = parse_number(a, v);
        else if (!strcmp(a, "--whiteout")) o.whiteouts[o.whiteout_count++] = v;
        else if (!strcmp(a, "--whiteout-file")) o.whiteout_file = v;
        else if (!strcmp(a, "--bind-state")) o.bind_state = v;
        else if (!strcmp(a, "--git-config")) o.git_config = v;
        else if (!strcmp(a, "--rootfs")) o.rootfs = v;
        else if (!strcmp(a, "--self-fd")) o.self_fd = parse_number(a, v);
        else if (!strcmp(a, "--keep-fd")) o.keep_fds[o.keep_fd_count++] = (int)parse_number(a, v);
        else if (!strcmp(a, "--seccomp-fd")) o.seccomp_fd = parse_number(a, v);
        else if (!strcmp(a, "--cgroup")) o.cgroups[o.cgroup_count++] = v;
        else fail("unknown option %s", a);
    }
    if (!o.repo || !o.state || i >= argc || o.repo[0] != '/' || o.state[0] != '/')
        fail("usage: nsinit create --repo /ABS --state /ABS [options] -- PROGRAM [ARGS...]");
    if (o.seccomp_fd >= 0 && o.seccomp_fd <= 2) fail("--seccomp-fd must be above 2");
    if (o.self_fd >= 0 && (o.self_fd <= 2 || o.self_fd == o.seccomp_fd)) fail("--self-fd must be above 2 and not the --seccomp-fd");
    for (int k = 0; k < o.keep_fd_count; k++)
        if (o.keep_fds[k] == o.seccomp_fd || o.keep_fds[k] == o.self_fd) fail("--keep-fd %d is also the --seccomp-fd or the --self-fd", o.keep_fds[k]);
    if (o.rootfs && o.rootfs[0] != '/') fail("--rootfs needs an absolute path: %s", o.rootfs);
    o.program = &argv[i];
    close_inherited_fds(o.keep_fds, o.keep_fd_count);
    join_cgroups(o.cgroups, o.cgroup_count);
    if (o.seccomp_fd >= 0) {
        int filter = sandbox_filter_memfd();
        if (filter < 0) die("seccomp program");
        /* dup2 leaves the new fd without FD_CLOEXEC: it passes to PROGRAM */
        if (filter == (int)o.seccomp_fd) {
            if (fcntl(filter, F_SETFD, 0) < 0) die("fcntl the seccomp program's fd");
        } else {
            if (dup2(filter, (int)o.seccomp_fd) < 0) die("dup2 the seccomp program to fd %ld", o.seccomp_fd);
            close(filter);
        }
    }
    if (o.self_fd >= 0) put_self_on_fd(o.self_fd);

    if (getuid() == 0 && !o.userns) create_root_mode(&o);
    else create_userns_mode(&o);

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("PR_SET_NO_NEW_PRIVS");
    execvp(o.program[0], o.program);
    die("exec %s", o.program[0]);
    return SETUP_FAILED;
}

/* -------------------------------------------------------------------- exec */

static pid_t exec_child = -1;

/* kill() from the daemon reaches the relay: pass it on.  Terminal-generated signals
 * already reach the child through its own session, so only SI_USER-style ones count. */
static void forward_signal(int sig, siginfo_t *si, void *context) {
    (void)context;
    if (exec_child > 0 && (si->si_code == SI_USER || si->si_code == SI_QUEUE || si->si_code == SI_TKILL))
        kill(exec_child, sig);
}

static void ns_id(int fd, dev_t *dev, ino_t *ino) {
    struct stat st;
    if (fstat(fd, &st) < 0) die("fstat namespace");
    *dev = st.st_dev;
    *ino = st.st_ino;
}

/* Field 22 of /proc/pid/stat: the process's start time in clock ticks since boot. */
static unsigned long long start_time(long pid) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open %s", path);
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) die("read %s", path);
    text[n] = 0;
    char *p = strrchr(text, ')');                     /* the command name may hold spaces */
    for (int field = 2; p && field < 22; field++) p = strchr(p + 1, ' ');
    if (!p) { errno = EINVAL; die("parse %s", path); }
    return strtoull(p + 1, NULL, 10);
}

/* A pidfd on the sandbox's init, checked against its start time: pid reuse by another
 * process is refused before anything under /proc/N is opened. */
static int pin_init(long pid, long started) {
    int pidfd = syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (pidfd < 0) die("pidfd_open %ld", pid);
    if (started >= 0 && start_time(pid) != (unsigned long long)started) {
        errno = ESRCH;
        die("pid %ld is not the sandbox's init (start time differs)", pid);
    }
    return pidfd;
}

/* The pidfd, taken before the opens, still live after them: every /proc/N file opened
 * in between belonged to the process pin_init checked. */
static void still_alive(int pidfd, long pid) {
    struct pollfd exited = {pidfd, POLLIN, 0};
    if (poll(&exited, 1, 0) != 0) { errno = ESRCH; die("pid %ld exited", pid); }
}

/* A root daemon first becomes the sandbox's own host uid: nothing below runs as root. */
static void become_host_user(long host_uid, long host_gid) {
    if (getuid() != 0 || host_uid <= 0) return;
    gid_t g = host_gid > 0 ? (gid_t)host_gid : (gid_t)host_uid;
    if (setgroups(0, NULL) < 0) die("setgroups (host)");
    if (setresgid(g, g, g) < 0) die("setresgid %u (host)", g);
    if (setresuid(host_uid, host_uid, host_uid) < 0) die("setresuid %ld (host)", host_uid);
}

/* The outermost user namespace below ours on userfd's chain (bwrap's A, which owns the
 * sandbox's other namespaces); *nested says whether userfd is a different one below it. */
static int outer_userns(int userfd, int *nested) {
    dev_t my_dev, dev, target_dev;
    ino_t my_ino, ino, target_ino;
    int self = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
    if (self < 0) die("open /proc/self/ns/user");
    ns_id(self, &my_dev, &my_ino);
    close(self);
    int outer = dup(userfd);
    for (;;) {
        int parent = ioctl(outer, NS_GET_PARENT);
        if (parent < 0) die("NS_GET_PARENT (the sandbox's user namespace is not below ours)");
        ns_id(parent, &dev, &ino);
        if (dev == my_dev && ino == my_ino) { close(parent); break; }
        close(outer);
        outer = parent;
    }
    ns_id(outer, &dev, &ino);
    ns_id(userfd, &target_dev, &target_ino);
    *nested = !(dev == target_dev && ino == target_ino);
    return outer;
}

/* The child was killed by sig: die of the same signal so the caller sees it (no core). */
int exit_like(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    int sig = WTERMSIG(status);
    struct rlimit no_core = {0, 0};
    sigset_t set;
    setrlimit(RLIMIT_CORE, &no_core);
    signal(sig, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    return 128 + sig;
}

static int exec_main(int argc, char **argv) {
    long pid = -1, host_uid = -1, host_gid = -1, uid = 1000, gid = 1000, mntns = -1, started = -1;
    const char *cwd = "/workspace";
    const char **cgroups = calloc((size_t)argc, sizeof *cgroups);
    int cgroup_count = 0;
    int i;
    if (!cgroups) die("calloc");
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) { i++; break; }
        if (i + 1 >= argc) fail("%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--cgroup")) cgroups[cgroup_count++] = v;
        else if (!strcmp(a, "--pid")) pid = parse_number(a, v);
        else if (!strcmp(a, "--start-time")) started = parse_number(a, v);
        else if (!strcmp(a, "--mntns")) mntns = parse_number(a, v);
        else if (!strcmp(a, "--host-uid")) host_uid = parse_number(a, v);
        else if (!strcmp(a, "--host-gid")) host_gid = parse_number(a, v);
        else if (!strcmp(a, "--uid")) uid = parse_number(a, v);
        else if (!strcmp(a, "--gid")) gid = parse_number(a, v);
        else if (!strcmp(a, "--cwd")) cwd = v;
        else fail("unknown option %s", a);
    }
    if (pid <= 0 || i >= argc) fail("usage: nsinit exec --pid N [options] -- CMD [ARGS...]");
    char **cmd = &argv[i];
    close_inherited_fds(NULL, 0);

    /* 0. into the sandbox's cgroup (as root), then become the sandbox's host uid before touching anything */
    join_cgroups(cgroups, cgroup_count);
    become_host_user(host_uid, host_gid);

    /* 1. open everything while we still see the host's /proc */
    static const struct { const char *name; int type; } nss[] = {
        {"cgroup", CLONE_NEWCGROUP}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
        {"net", CLONE_NEWNET}, {"pid", CLONE_NEWPID}, {"mnt", CLONE_NEWNS},
    };
    enum { NS_COUNT = sizeof nss / sizeof nss[0], MNT = NS_COUNT - 1 };
    int nsfd[NS_COUNT], userfd, rootfd;
    char path[128];
    int pidfd = pin_init(pid, started);
    for (int k = 0; k < NS_COUNT; k++) {
        snprintf(path, sizeof path, "/proc/%ld/ns/%s", pid, nss[k].name);
        if ((nsfd[k] = open(path, O_RDONLY | O_CLOEXEC)) < 0) die("open %s", path);
    }
    snprintf(path, sizeof path, "/proc/%ld/ns/user", pid);
    if ((userfd = open(path, O_RDONLY | O_CLOEXEC)) < 0) die("open %s", path);
    snprintf(path, sizeof path, "/proc/%ld/root", pid);
    if ((rootfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) die("open %s", path);
    still_alive(pidfd, pid);
    if (mntns > 0) {
        dev_t dev;
        ino_t ino;
        ns_id(nsfd[MNT], &dev, &ino);
        if ((long)ino != mntns) { errno = ESRCH; die("pid %ld is not the sandbox's init (mnt ns %lu)", pid, (unsigned long)ino); }
    }
    close(pidfd);

    /* 2. the outermost user namespace below ours on the target's chain (A) */
    int nested;
    int outer = outer_userns(userfd, &nested);

    /* 3. join A (its owner, or host root, has every capability there), the rest, then B */
    if (setns(outer, CLONE_NEWUSER) < 0) die("setns user (outer)");
    for (int k = 0; k < NS_COUNT; k++)
        if (setns(nsfd[k], nss[k].type) < 0) die("setns %s", nss[k].name);
    if (nested && setns(userfd, CLONE_NEWUSER) < 0) die("setns user");
    if (fchdir(rootfd) < 0 || chroot(".") < 0) die("chroot to /proc/%ld/root", pid);
    if (chdir(cwd) < 0) die("chdir %s", cwd);
    char here[PATH_MAX];
    if (getcwd(here, sizeof here)) setenv("PWD", here, 1);

    /* 4. credentials: groups, bounding set, ids, remaining caps, no_new_privs.  setgroups
     * is denied in a non-root daemon's userns: its groups then stay (seen as 65534). */
    if (setgroups(0, NULL) < 0 && errno != EPERM) die("setgroups");
    for (int c = 0; c <= 63; c++)
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno == EINVAL) break;
    if (setresgid(gid, gid, gid) < 0) die("setresgid %ld", gid);
    if (setresuid(uid, uid, uid) < 0) die("setresuid %ld", uid);
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{0, 0, 0}, {0, 0, 0}};
    if (syscall(SYS_capset, &header, data) < 0) die("capset");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("PR_SET_NO_NEW_PRIVS");

    /* 5. fork into the pid namespace (setns(pid) applies to children only).  With a
     * controlling tty (node-pty makes us its session leader), hand it to the child so the
     * child leads a session inside the pid ns: a session whose leader lives outside breaks
     * job control, and ^C would hit this relay instead of the workload. */
    int pass_tty = isatty(0) && tcgetsid(0) == getpid();
    if (pass_tty) {
        signal(SIGHUP, SIG_IGN);               /* TIOCNOTTY sends SIGHUP+SIGCONT to our pgrp */
        if (ioctl(0, TIOCNOTTY) < 0) die("TIOCNOTTY");
        signal(SIGHUP, SIG_DFL);
    }
    int alive[2];
    if (pipe2(alive, O_CLOEXEC) < 0) die("pipe");
    exec_child = fork();
    if (exec_child < 0) die("fork");
    if (exec_child == 0) {
        close(alive[1]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        struct pollfd relay_gone = {alive[0], POLLIN, 0};
        if (poll(&relay_gone, 1, 0) > 0) _exit(SETUP_FAILED);
        if (pass_tty && (setsid() < 0 || ioctl(0, TIOCSCTTY, 0) < 0)) {
            fprintf(stderr, "nsinit: take the controlling tty: %s\n", strerror(errno));
            _exit(SETUP_FAILED);
        }
        if (install_sandbox_filter() < 0) {
            fprintf(stderr, "nsinit: install the seccomp filter: %s\n", strerror(errno));
            _exit(SETUP_FAILED);
        }
        execvp(cmd[0], cmd);
        /* the workload's own failure, reported like a shell would */
        int e = errno;
        fprintf(stderr, "%s: %s\n", cmd[0], e == ENOENT ? "command not found" : strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }
    close(alive[0]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = forward_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM};
    for (unsigned k = 0; k < sizeof forwarded / sizeof forwarded[0]; k++) sigaction(forwarded[k], &sa, NULL);
    int status;
    for (;;) {
        pid_t r = waitpid(exec_child, &status, WUNTRACED);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("waitpid");
        if (WIFSTOPPED(status)) { kill(getpid(), SIGSTOP); kill(exec_child, SIGCONT); continue; }
        break;
    }
    return exit_like(status);
}

/* ------------------------------------------------------------------ listen */

/*
 * nsinit listen --pid N [--start-time TICKS] [--host-uid U --host-gid G] --port P
 *
 * Creates a TCP socket listening on 127.0.0.1:P inside the sandbox's network namespace
 * and hands it to the parent over Node's IPC channel (NODE_CHANNEL_FD): one JSON line
 * {"cmd":"NODE_HANDLE","type":"net.Server",...} carrying the socket as SCM_RIGHTS, which
 * Node turns into a listening net.Server in the daemon.  The daemon then accepts the
 * sandbox's connections itself: no process of cleanroom runs inside the sandbox.
 */
static int listen_main(int argc, char **argv) {
    long pid = -1, started = -1, host_uid = -1, host_gid = -1, port = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) fail("%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--pid")) pid = parse_number(a, v);
        else if (!strcmp(a, "--start-time")) started = parse_number(a, v);
        else if (!strcmp(a, "--host-uid")) host_uid = parse_number(a, v);
        else if (!strcmp(a, "--host-gid")) host_gid = parse_number(a, v);
        else if (!strcmp(a, "--port")) port = parse_number(a, v);
        else fail("unknown option %s", a);
    }
    if (pid <= 0 || port <= 0 || port > 65535) fail("usage: nsinit listen --pid N --port P [options]");
    const char *channel = getenv("NODE_CHANNEL_FD");
    if (!channel) fail("listen hands its socket to a Node parent: spawn it with an 'ipc' stdio channel");
    int ipc = (int)parse_number("NODE_CHANNEL_FD", channel);
    close_inherited_fds(&ipc, 1);

    become_host_user(host_uid, host_gid);
    char path[128];
    int pidfd = pin_init(pid, started);
    snprintf(path, sizeof path, "/proc/%ld/ns/user", pid);
    int userfd = open(path, O_RDONLY | O_CLOEXEC);
    if (userfd < 0) die("open %s", path);
    snprintf(path, sizeof path, "/proc/%ld/ns/net", pid);
    int netfd = open(path, O_RDONLY | O_CLOEXEC);
    if (netfd < 0) die("open %s", path);
    still_alive(pidfd, pid);
    close(pidfd);

    int nested;
    int outer = outer_userns(userfd, &nested);
    if (setns(outer, CLONE_NEWUSER) < 0) die("setns user (outer)");
    if (setns(netfd, CLONE_NEWNET) < 0) die("setns net");

    /* Non-blocking: the daemon's accept loop runs until EAGAIN, which a blocking socket never gives. */
    int sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sock < 0) die("socket");
    int on = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(sock, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind 127.0.0.1:%ld in the sandbox", port);
    if (listen(sock, 512) < 0) die("listen");

    char message[160];
    int length = snprintf(message, sizeof message, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Server\",\"msg\":{\"port\":%ld}}\n", port);
    struct iovec iov = {message, (size_t)length};
    union { struct cmsghdr header; char space[CMSG_SPACE(sizeof(int))]; } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space, .msg_controllen = sizeof control.space};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &sock, sizeof(int));
    if (sendmsg(ipc, &msg, MSG_NOSIGNAL) != length) die("send the socket to the daemon");

    /* Node acknowledges the handle; until then the socket is ours to keep open. */
    char ack[256];
    struct pollfd reply = {ipc, POLLIN, 0};
    if (poll(&reply, 1, 10000) <= 0 || read(ipc, ack, sizeof ack) <= 0) {
        errno = ETIMEDOUT;
        die("wait for the daemon to take the socket");
    }
    return 0;
}

/* -------------------------------------------------------------------- hold */

/* nsinit hold READY_FD: see the comment at the top. */
static int hold_main(int argc, char **argv) {
    if (argc != 2) fail("usage: nsinit hold READY_FD");
    int ready = (int)parse_number("READY_FD", argv[1]);
    close_inherited_fds(&ready, 1);
    prctl(PR_SET_NAME, "cleanroom-hold", 0, 0, 0);
    if (write(ready, "ready\n", 6) != 6) die("write to fd %d", ready);
    close(ready);
    for (;;) pause();
    return 0;
}

/* ----------------------------------------------------------------- seccomp */

/*
 * nsinit seccomp -- CMD [ARGS...]
 *
 * Runs CMD under the sandbox's seccomp filter and no_new_privs, without any namespace:
 * the filter on its own, for tests and benchmarks.
 */
static int seccomp_main(int argc, char **argv) {
    if (argc < 3 || strcmp(argv[1], "--")) fail("usage: nsinit seccomp -- CMD [ARGS...]");
    close_inherited_fds(NULL, 0);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("PR_SET_NO_NEW_PRIVS");
    if (install_sandbox_filter() < 0) die("install the seccomp filter");
    execvp(argv[2], &argv[2]);
    die("exec %s", argv[2]);
    return SETUP_FAILED;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "create")) return create_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "exec")) return exec_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "listen")) return listen_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "seccomp")) return seccomp_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "hold")) return hold_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "init")) return guest_init_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "run")) return guest_run_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "forward")) return guest_forward_main(argc - 1, argv + 1);
    fputs("usage: nsinit create ... | exec ... | listen ... | seccomp ... | hold ... | init | run ... | forward ...  (see nsinit.c and guest.h)\n", stderr);
    return SETUP_FAILED;
}
