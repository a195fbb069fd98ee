/**
 * Real OpenSSH on test hosts, for `stopctl walk`: one host key and one user key made by the
 * test, an sshd per host started inside the host on its documentation address, and the ssh
 * command line that reaches them (root with the test key, host keys checked against a
 * known_hosts file the test wrote, no user or system configuration read).
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { STOPCTL } from './daemon.js';
import type { TestHost } from './testnet.js';

/** sshd and ssh are installed (openssh-server, openssh-client). */
export const HAS_OPENSSH = existsSync('/usr/sbin/sshd') && existsSync('/usr/bin/ssh') && existsSync('/usr/bin/ssh-keygen');

/** Keys, known hosts and the remote stopctl wrapper, in one temporary directory. */
export interface SshKit {
  readonly dir: string;
  /** `ssh` and its options, as words (for spawning) and as one line (for `--ssh`). */
  readonly sshWords: readonly string[];
  readonly sshLine: string;
  /**
   * What `--remote-stopctl` names: a script running this checkout's stopctl with the store of
   * the host it runs on (sshd puts that host's store in STOPD_WALK_STORE, see {@link startSshd}).
   */
  readonly remoteStopctl: string;
  /** Removes the directory. */
  remove(): void;
}

/** Makes the keys and files for `hosts` (the known_hosts file names each by its address). */
export function createSshKit(hosts: readonly TestHost[]): SshKit {
  const dir = mkdtempSync(join(tmpdir(), 'stopd-walk-ssh-'));
  chmodSync(dir, 0o700);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'stopd-test-host', '-f', join(dir, 'host_key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'stopd-test-user', '-f', join(dir, 'user_key')]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'user_key.pub')), { mode: 0o600 });
  const hostKey = readFileSync(join(dir, 'host_key.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
  writeFileSync(join(dir, 'known_hosts'), `${hosts.map((host) => host.address).join(',')} ${hostKey}\n`);
  const remoteStopctl = join(dir, 'stopctl-here');
  writeFileSync(remoteStopctl, `#!/bin/sh\nexec ${process.execPath} ${STOPCTL} "$@" --store "$STOPD_WALK_STORE"\n`, { mode: 0o755 });
  const sshWords = [
    'ssh',
    '-F', '/dev/null',
    '-i', join(dir, 'user_key'),
    '-l', 'root',
    '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes',
    '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'ConnectTimeout=5',
  ];
  return { dir, sshWords, sshLine: sshWords.join(' '), remoteStopctl, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Starts sshd inside `host` on its address, port 22, in the foreground (so the host's teardown
 * stops it), logging to its stderr; sessions get STOPD_WALK_STORE=`storeDir`. Resolves once
 * it listens.
 */
export async function startSshd(host: TestHost, kit: SshKit, options: { storeDir: string }): Promise<ChildProcess> {
  // sshd refuses to start without its privilege separation directory (made by systemd normally).
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const config = join(kit.dir, `sshd_config-${host.name}`);
  writeFileSync(
    config,
    [
      `ListenAddress ${host.address}:22`,
      `HostKey ${join(kit.dir, 'host_key')}`,
      `AuthorizedKeysFile ${join(kit.dir, 'authorized_keys')}`,
      'PidFile none',
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      `SetEnv STOPD_WALK_STORE=${options.storeDir}`,
      '',
    ].join('\n'),
  );
  // sshd runs each command through root's login shell, and bash reads ~/.bashrc for it. This
  // machine's own start-up files are not the test host's: one that waits on a lock (pyenv's
  // rehash does, for a minute, after an interrupted session) stalls every hop. The host has a
  // mount namespace of its own, so hiding them there leaves the machine untouched.
  const hidden = await host.exec(['sh', '-c', 'for f in "$HOME/.bashrc" "$HOME/.bash_profile" "$HOME/.profile" "$HOME/.bash_login"; do if [ -f "$f" ]; then mount --bind /dev/null "$f" || exit 1; fi; done']);
  if (hidden.code !== 0) throw new Error(`Cannot hide root's shell start-up files on ${host.name}: ${hidden.stderr}`);
  const sshd = host.spawn(['/usr/sbin/sshd', '-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  sshd.stderr?.on('data', (chunk: Buffer) => {
    log += chunk.toString();
  });
  try {
    await host.waitForListener(22);
  } catch (error) {
    throw new Error(`sshd did not start on ${host.name}: ${log}`, { cause: error });
  }
  return sshd;
}
