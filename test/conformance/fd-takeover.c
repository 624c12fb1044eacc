/*
 * Runs inside a sandbox: for every fd of each pid given, tries to write through
 * it as a workload could, and prints one JSON object keyed by /proc/<pid>/fd/<n>:
 * what the fd is (readlink), and the outcome of two attempts, "wrote" or the
 * errno's text: opening it again for appending (O_NONBLOCK: a pipe with no reader
 * refuses at once, one whose reader is gone answers EPIPE), and taking it over
 * with pidfd_getfd.
 *   cc -O2 -o fd-takeover fd-takeover.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static const char *written(int fd, const char *how) {
    char line[128];
    int length = snprintf(line, sizeof line, "written from inside the sandbox through %s\n", how);
    return write(fd, line, (size_t)length) == length ? "wrote" : strerror(errno);
}

static void json_string(const char *text) {
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c == '"' || *c == '\\') printf("\\%c", *c);
        else if (*c < 0x20) printf("\\u%04x", *c);
        else putchar(*c);
    }
    putchar('"');
}

int main(int argc, char **argv) {
    int first = 1;
    // A pipe whose reader is gone answers EPIPE, reported like any other refusal.
    signal(SIGPIPE, SIG_IGN);
    putchar('{');
    for (int arg = 1; arg < argc; arg++) {
        int pid = atoi(argv[arg]);
        char dir_path[64];
        snprintf(dir_path, sizeof dir_path, "/proc/%d/fd", pid);
        DIR *dir = opendir(dir_path);
        if (!dir) continue;
        int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        for (struct dirent *entry; (entry = readdir(dir));) {
            if (entry->d_name[0] == '.') continue;
            char path[384], target[512], reopened[128], taken[128];
            snprintf(path, sizeof path, "%s/%s", dir_path, entry->d_name);
            ssize_t length = readlink(path, target, sizeof target - 1);
            target[length < 0 ? 0 : length] = '\0';
            int again = open(path, O_WRONLY | O_APPEND | O_NONBLOCK);
            snprintf(reopened, sizeof reopened, "%s", again < 0 ? strerror(errno) : written(again, path));
            if (again >= 0) close(again);
            int copy = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, atoi(entry->d_name), 0);
            snprintf(taken, sizeof taken, "%s", copy < 0 ? strerror(errno) : written(copy, "pidfd_getfd"));
            if (copy >= 0) close(copy);
            printf("%s", first ? "" : ",");
            first = 0;
            json_string(path);
            printf(":{\"target\":");
            json_string(target);
            printf(",\"reopened\":");
            json_string(reopened);
            printf(",\"pidfd_getfd\":");
            json_string(taken);
            putchar('}');
        }
        closedir(dir);
        if (pidfd >= 0) close(pidfd);
    }
    printf("}\n");
    return 0;
}
