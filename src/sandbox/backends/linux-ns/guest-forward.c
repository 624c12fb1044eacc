/*
 * nsinit forward: the egress proxy's port on a gVisor sandbox's loopback (see guest.h).
 *
 *   nsinit forward --port P --socket PATH
 *
 * A gVisor sandbox has its own network stack (--network=none: loopback only), which no
 * socket of the daemon can enter; the daemon listens on a unix socket instead, which
 * runsc lets the sandbox connect to (--host-uds=open) through a bind mount.  This mode
 * listens on 127.0.0.1:P and relays each connection to a new connection to PATH, bytes
 * unchanged in both directions, each direction's end (half-close) passed on.
 *
 * The sandbox's init starts the proxy port's forwarder itself (nsinit init --forward),
 * before it says the sandbox is ready; this mode starts the others, and the proxy's
 * again after a daemon restart.  Once it listens it prints "listening" and goes to the
 * background (the daemon's `runsc exec` returns); it prints "in use" and exits 3 when P
 * stays taken for a second (a forwarder started before a daemon restart still serves
 * it: it reaches the new daemon's socket by the same path).  When PATH refuses a
 * connection, the daemon is gone: the connection is reset, the port closed, and the
 * forwarder exits, so later connections are refused until a daemon adopts the sandbox
 * and starts a new one.  A connection the daemon closes without answering is reset, as
 * a refused one would be.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "guest.h"
#include "seccomp.h"

#define FORWARD_IN_USE 3
#define BIND_RETRY_MS 1000
/* What one recv takes: inside gVisor every system call is dear, and a 64 MiB download
   through the proxy went from 100-147 to 188-226 MiB/s when this went from 64 to 256 KiB
   (1 MiB was no better). Untouched, the buffer costs an idle sandbox nothing. */
#define CHUNK 262144

/* One side of a relayed connection; `pending` holds what its peer sent that it has not taken yet. */
struct side {
    int fd;
    struct side *peer;
    char *pending;
    size_t pending_off, pending_len;
    int eof;            /* read returned 0: passed on as a shutdown of the peer's writing */
    int shut;           /* our writing side is shut down */
    int daemon;         /* the daemon's side of the pair */
    int answered;       /* it has sent a byte */
};

static int epoll_fd;
static char chunk[CHUNK];
/* Pairs closed during one batch of events, freed after it: a later event of the batch may name them. */
static struct side **closed;
static size_t closed_count, closed_size;

static void watch(struct side *s, int op) {
    struct epoll_event event = {.events = 0, .data.ptr = s};
    /* Read while the peer can take more; write while something waits for us. */
    if (!s->eof && s->peer->pending_len == 0) event.events |= EPOLLIN;
    if (s->pending_len > 0) event.events |= EPOLLOUT;
    epoll_ctl(epoll_fd, op, s->fd, &event);
}

static void reset(int fd) {
    struct linger now = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
    close(fd);
}

static void close_pair(struct side *s, int abort) {
    struct side *sides[2] = {s, s->peer};
    for (int k = 0; k < 2; k++) {
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, sides[k]->fd, NULL);
        if (abort) reset(sides[k]->fd);
        else close(sides[k]->fd);
        sides[k]->fd = -1;
        free(sides[k]->pending);
        sides[k]->pending = NULL;
    }
    if (closed_count == closed_size) {
        size_t size = closed_size ? 2 * closed_size : 64;
        struct side **grown = realloc(closed, size * sizeof *grown);
        if (!grown) die("realloc");
        closed = grown;
        closed_size = size;
    }
    closed[closed_count++] = sides[0] < sides[1] ? sides[0] : sides[1];
}

/* Once both directions are over (and flushed) the pair goes. */
static int finished(struct side *s) {
    return s->eof && s->peer->eof && s->pending_len == 0 && s->peer->pending_len == 0;
}

static void pass_eof(struct side *to) {
    if (to->pending_len == 0 && to->peer->eof && !to->shut) {
        shutdown(to->fd, SHUT_WR);
        to->shut = 1;
    }
}

static void on_readable(struct side *s) {
    ssize_t n = recv(s->fd, chunk, sizeof chunk, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0) { close_pair(s, 1); return; }
    struct side *to = s->peer;
    /* The daemon always answers (a status line, a SOCKS reply): closing without a byte is a refusal. */
    if (n == 0 && s->daemon && !s->answered) { close_pair(s, 1); return; }
    if (n > 0) s->answered = 1;
    if (n == 0) {
        s->eof = 1;
        pass_eof(to);
    } else {
        ssize_t sent = send(to->fd, chunk, (size_t)n, MSG_NOSIGNAL);
        if (sent < 0 && errno != EAGAIN) { close_pair(s, 1); return; }
        if (sent < 0) sent = 0;
        if (sent < n) {
            to->pending = malloc((size_t)(n - sent));
            if (!to->pending) { close_pair(s, 1); return; }
            memcpy(to->pending, chunk + sent, (size_t)(n - sent));
            to->pending_off = 0;
            to->pending_len = (size_t)(n - sent);
        }
    }
    if (finished(s)) { close_pair(s, 0); return; }
    watch(s, EPOLL_CTL_MOD);
    watch(to, EPOLL_CTL_MOD);
}

static void on_writable(struct side *s) {
    ssize_t sent = send(s->fd, s->pending + s->pending_off, s->pending_len, MSG_NOSIGNAL);
    if (sent < 0 && errno != EAGAIN && errno != EINTR) { close_pair(s, 1); return; }
    if (sent > 0) {
        s->pending_off += (size_t)sent;
        s->pending_len -= (size_t)sent;
    }
    if (s->pending_len == 0) {
        free(s->pending);
        s->pending = NULL;
        pass_eof(s);
    }
    if (finished(s)) { close_pair(s, 0); return; }
    watch(s, EPOLL_CTL_MOD);
    watch(s->peer, EPOLL_CTL_MOD);
}

/* Accepts every waiting client and connects each to the daemon; 0 once the daemon is gone. */
static int on_clients(int listener, const struct sockaddr_un *daemon) {
    for (;;) {
        int client = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (client < 0) return 1;
        int upstream = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (upstream < 0) { reset(client); continue; }
        if (connect(upstream, (const struct sockaddr *)daemon, sizeof *daemon) < 0 && errno != EINPROGRESS) {
            int gone = errno == ECONNREFUSED || errno == ENOENT;
            close(upstream);
            reset(client);
            if (gone) return 0;
            continue;                       /* EAGAIN: the daemon's backlog is full, this one is turned away */
        }
        struct side *pair = calloc(2, sizeof *pair);
        if (!pair) { close(upstream); reset(client); continue; }
        pair[0] = (struct side){.fd = client, .peer = &pair[1]};
        pair[1] = (struct side){.fd = upstream, .peer = &pair[0], .daemon = 1};
        watch(&pair[0], EPOLL_CTL_ADD);
        watch(&pair[1], EPOLL_CTL_ADD);
    }
}

int forward_listen(long port) {
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int waited = 0;; waited += 50) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        int on = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        if (bind(fd, (struct sockaddr *)&address, sizeof address) == 0) {
            if (listen(fd, 4096) < 0) die("listen");
            return fd;
        }
        if (errno != EADDRINUSE) die("bind 127.0.0.1:%ld", port);
        close(fd);
        if (waited >= BIND_RETRY_MS) return -1;
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

void forward_address(const char *path, struct sockaddr_un *daemon) {
    *daemon = (struct sockaddr_un){.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof daemon->sun_path) fail("--socket: longer than a unix socket path may be: %s", path);
    strcpy(daemon->sun_path, path);
}

int forward_serve(int listener, const struct sockaddr_un *daemon) {
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) die("epoll_create1");
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &event) < 0) die("epoll_ctl");
    setsid();
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        for (int fd = 0; fd <= 2; fd++) dup2(null, fd);
        close(null);
    }

    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(epoll_fd, events, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return 1;
        for (int k = 0; k < n; k++) {
            struct side *s = events[k].data.ptr;
            unsigned what = events[k].events;
            if (!s) {
                if (!on_clients(listener, daemon)) return 0;
                continue;
            }
            if (s->fd < 0) continue;
            if (what & EPOLLERR) { close_pair(s, 1); continue; }
            if (what & EPOLLOUT) on_writable(s);
            if (s->fd < 0) continue;
            if (what & EPOLLIN) on_readable(s);
            /* Hung up after its end was passed on: nothing more can reach it. */
            else if (what & EPOLLHUP) s->eof ? close_pair(s, 0) : on_readable(s);
        }
        for (size_t k = 0; k < closed_count; k++) free(closed[k]);
        closed_count = 0;
    }
}

int guest_forward_main(int argc, char **argv) {
    long port = -1;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) fail("%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--port")) port = parse_number(a, v);
        else if (!strcmp(a, "--socket")) path = v;
        else fail("unknown option %s", a);
    }
    if (port <= 0 || port > 65535 || !path) fail("usage: nsinit forward --port P --socket PATH");
    struct sockaddr_un daemon;
    forward_address(path, &daemon);
    close_inherited_fds(NULL, 0);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("PR_SET_NO_NEW_PRIVS");
    if (install_sandbox_filter() < 0) die("install the seccomp filter");

    int listener = forward_listen(port);
    if (listener < 0) {
        puts("in use");
        return FORWARD_IN_USE;
    }
    pid_t background = fork();
    if (background < 0) die("fork");
    if (background > 0) {
        puts("listening");
        return 0;
    }
    return forward_serve(listener, &daemon);
}
