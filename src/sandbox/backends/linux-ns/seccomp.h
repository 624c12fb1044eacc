/* The seccomp filter of every sandboxed process: what it refuses and why is in seccomp.c. */
#ifndef CLEANROOM_SECCOMP_H
#define CLEANROOM_SECCOMP_H

#include <linux/filter.h>

/* The filter as a classic BPF program, built on first use. */
const struct sock_fprog *sandbox_filter(void);

/* Installs the filter on the calling thread; no_new_privs must be set.  -1 with errno on failure. */
int install_sandbox_filter(void);

/* A memfd holding the program's instructions at offset 0, for bwrap's --seccomp FD.  -1 with errno. */
int sandbox_filter_memfd(void);

#endif
