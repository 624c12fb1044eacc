/*
 * The modes of cleanroom-nsinit that run INSIDE a gVisor sandbox (src/sandbox/backends/gvisor/).
 * The daemon binds a copy of the static helper into the sandbox and starts each mode with
 * `runsc exec --process`, whose process spec sets the user, no capabilities and no_new_privs:
 *
 *   nsinit init ...             the sandbox's pid 1, and the proxy port's forwarder (guest-init.c)
 *   nsinit run ...              one command of an exec, on pipes or a terminal (guest-run.c)
 *   nsinit forward ...          the egress proxy's port on the sandbox's loopback (guest-forward.c)
 *
 * and init's exec server (guest-serve.c), which runs execs without a terminal with no `runsc exec`.
 *
 * They share nsinit.c's error conventions: "nsinit: <step>: <error>" on stderr, exit 125.
 */
#ifndef CLEANROOM_GUEST_H
#define CLEANROOM_GUEST_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/un.h>

#define SETUP_FAILED 125

/* nsinit.c */
void die(const char *step, ...) __attribute__((noreturn, format(printf, 1, 2)));
void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
long parse_number(const char *option, const char *value);
void close_inherited_fds(int *keep, int count);
int exit_like(int status);

/* guest-forward.c: the forwarder's parts, which init uses too. */
int forward_listen(long port);
void forward_address(const char *path, struct sockaddr_un *daemon);
int forward_serve(int listener, const struct sockaddr_un *daemon);

/* guest-serve.c */
void drop_bounding_set(void);
void clear_capabilities(void);
void guest_serve(const char *socket_path, long uid, long gid, char *key) __attribute__((noreturn));

/* guest-run.c */
int write_all(int fd, const char *buf, size_t len);

/* A control connection from the daemon: "signal <n>" and, with a terminal's master, "size <cols> <rows>" lines. */
struct control {
    int fd;
    char line[64];
    size_t len;
};
int read_control(struct control *c, pid_t child, int master);

int guest_init_main(int argc, char **argv);
int guest_run_main(int argc, char **argv);
int guest_forward_main(int argc, char **argv);

#endif
