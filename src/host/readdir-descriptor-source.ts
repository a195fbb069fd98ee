/**
 * The descriptor source with no native help: one JavaScript pass of readdir and readlink over
 * every `/proc/PID/fd`, at the first holder question of a snapshot.
 */
import { pushTo, ScanningDescriptorSource, type Holder } from './descriptor-source.js';
import { listPids, type ProcFdReader } from './proc-fd-reader.js';

/** Scans every process's descriptors from JavaScript, once per snapshot. */
export class ReaddirDescriptorSource extends ScanningDescriptorSource {
  readonly #reader: ProcFdReader;
  readonly #hiddenPid: number | undefined;

  /** `hiddenPid`: a process whose descriptors are not read at all (stopd itself, see LinuxProcessTableOptions.hideSelf). */
  constructor(reader: ProcFdReader, options: { readonly hiddenPid: number | undefined }) {
    super();
    this.#reader = reader;
    this.#hiddenPid = options.hiddenPid;
  }

  protected override scan(): Map<number, Holder[]> {
    const built = new Map<number, Holder[]>();
    for (const pid of listPids(this.#reader.procRoot)) {
      if (pid === this.#hiddenPid) continue;
      for (const { fd, link } of this.#reader.readFds(pid) ?? []) pushTo(built, fd.inode, { pid, fd: fd.fd, link });
    }
    return built;
  }
}
