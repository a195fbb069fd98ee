import { closeSync, constants, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** A local account, from the passwd database. */
export interface Account {
  readonly uid: number;
  readonly name: string;
  readonly home: string;
}

/**
 * uid -> account from `/etc/passwd`, re-read only when the file changes. (NSS sources other
 * than files, e.g. LDAP, are not consulted: a daemon on the request path must not block on a
 * directory server; such users are logged by uid.)
 */
export class AccountDirectory {
  readonly #path: string;
  #mtimeMs = -1;
  #checkedAt = -Infinity;
  #byUid = new Map<number, Account>();

  constructor(path = '/etc/passwd') {
    this.#path = path;
  }

  /** The account of `uid`, or undefined when the passwd file does not list it. */
  lookup(uid: number): Account | undefined {
    this.#refresh();
    return this.#byUid.get(uid);
  }

  #refresh(): void {
    // At most one stat() a second: this runs on every ID request.
    const now = Date.now();
    if (now - this.#checkedAt < 1000) return;
    this.#checkedAt = now;
    let mtimeMs: number;
    try {
      mtimeMs = statSync(this.#path).mtimeMs;
    } catch {
      this.#byUid = new Map();
      return;
    }
    if (mtimeMs === this.#mtimeMs) return;
    this.#mtimeMs = mtimeMs;
    this.#byUid = parsePasswd(readFileSync(this.#path, 'utf8'));
  }
}

/** Parses passwd(5) text; the first entry of a uid wins, as getpwuid(3) does. */
export function parsePasswd(text: string): Map<number, Account> {
  const accounts = new Map<number, Account>();
  for (const line of text.split('\n')) {
    const [name, , uidText, , , home] = line.split(':');
    if (name === undefined || uidText === undefined || home === undefined || !/^\d+$/.test(uidText)) continue;
    const uid = Number(uidText);
    if (!accounts.has(uid)) accounts.set(uid, { uid, name, home });
  }
  return accounts;
}

/** Largest `~/.ident` read; a bigger file is ignored (the daemon runs as root: never read unbounded user data). */
const MAX_IDENT_FILE = 64 * 1024;

/**
 * Reads the opt-in list of a user (paper 4: `~/.ident` lists the hosts that may see the user
 * name): one host name, address or CIDR per line, `#` starts a comment. Returns undefined when
 * there is no usable file. The file must be a regular file owned by the user (or root) and not
 * writable by others; symbolic links are not followed, because the daemon reads it as root.
 */
export function readOptInFile(account: Account): string[] | undefined {
  let fd: number;
  try {
    fd = openSync(join(account.home, '.ident'), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile() || (info.uid !== account.uid && info.uid !== 0) || (info.mode & 0o002) !== 0) return undefined;
    if (info.size > MAX_IDENT_FILE) return undefined;
    const buf = Buffer.alloc(info.size);
    const length = readSync(fd, buf, 0, buf.length, 0);
    return buf
      .subarray(0, length)
      .toString('utf8')
      .split('\n')
      .map((line) => line.replace(/#.*/, '').trim())
      .filter((line) => line.length > 0);
  } finally {
    closeSync(fd);
  }
}
