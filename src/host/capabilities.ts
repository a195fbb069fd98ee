import { readFileSync } from 'node:fs';

/** Linux capability numbers stopd cares about (include/uapi/linux/capability.h). */
export const CAPABILITIES = {
  /** List other users' `/proc/PID/fd` directories and read their `~/.ident`. */
  CAP_DAC_READ_SEARCH: 2,
  /** Bind port 113 (not needed with systemd socket activation). */
  CAP_NET_BIND_SERVICE: 10,
  /** Read the fd links of other users' processes (`ptrace_may_access`, PTRACE_MODE_READ). */
  CAP_SYS_PTRACE: 19,
  /** Load the connection recorder's tracing program (with CAP_BPF; CAP_SYS_ADMIN alone also does). */
  CAP_PERFMON: 38,
  /** Create the recorder's BPF maps and program. */
  CAP_BPF: 39,
  /** Covers CAP_BPF and CAP_PERFMON on kernels before 5.8, which do not know them. */
  CAP_SYS_ADMIN: 21,
} as const;

export type CapabilityName = keyof typeof CAPABILITIES;

/** What SV analysis needs to see every process's sockets and pipes (found by test: see README, "Least privilege"). */
export const PROCESS_VIEW_CAPABILITIES: readonly CapabilityName[] = ['CAP_DAC_READ_SEARCH', 'CAP_SYS_PTRACE'];

/** What the eBPF connection recorder needs (found by test: src/host/connection-recorder.test.ts). */
export const RECORDER_CAPABILITIES: readonly CapabilityName[] = ['CAP_BPF', 'CAP_PERFMON'];

/** The effective capability mask of this process (`CapEff` of `/proc/self/status`), or undefined when unreadable. */
export function readEffectiveCapabilities(procRoot = '/proc'): bigint | undefined {
  try {
    const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync(`${procRoot}/self/status`, 'utf8'));
    return match?.[1] === undefined ? undefined : BigInt(`0x${match[1]}`);
  } catch {
    return undefined;
  }
}

/** The capabilities of `wanted` missing from `mask`. */
export function missingCapabilities(mask: bigint, wanted: readonly CapabilityName[]): CapabilityName[] {
  return wanted.filter((name) => (mask & (1n << BigInt(CAPABILITIES[name]))) === 0n);
}
