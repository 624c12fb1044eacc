import {execa} from 'execa'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

const SYSCALL_PROBE = fileURLToPath(new URL('syscall-probe.c', import.meta.url))

/** What the seccomp filter answers (syscall-probe.c): refused with EPERM, unavailable (ENOSYS), other ABIs killed. */
export const FILTERED: Record<string, string> = {
  unshare_user: 'EPERM',
  unshare_user_high_bits: 'EPERM',
  unshare_nothing: 'ok',
  clone_user: 'EPERM',
  clone_plain: 'ok',
  clone3: 'ENOSYS',
  keyctl: 'EPERM',
  add_key: 'EPERM',
  request_key: 'EPERM',
  bpf: 'EPERM',
  perf_event_open: 'EPERM',
  userfaultfd: 'EPERM',
  io_uring_setup: 'ENOSYS',
  kexec_load: 'EPERM',
  init_module: 'EPERM',
  finit_module: 'EPERM',
  delete_module: 'EPERM',
  mount: 'EPERM',
  setns: 'EPERM',
  syslog: 'EPERM',
  ioctl_tiocsti: 'EPERM',
  ioctl_tiocsti_high_bits: 'EPERM',
  ioctl_tioclinux: 'EPERM',
  ioctl_plain: 'EBADF',
  getpid: 'ok',
  ...(process.arch === 'x64' ? {x32_getpid: 'killed:SYS', i386_getpid: 'killed:SYS'} : {}),
}

/** Compiles syscall-probe.c into `dir` (gcc is one of the packages the tests need: .ci/run installs it). */
export async function buildSyscallProbe(dir: string): Promise<string> {
  const binary = join(dir, 'syscall-probe')
  await execa('cc', ['-O2', '-o', binary, SYSCALL_PROBE]).catch((error: unknown) => {
    throw new Error(`could not compile the syscall probe (the boundary tests need a C compiler: apt-get install -y gcc libc6-dev): ${String(error)}`)
  })
  return binary
}
