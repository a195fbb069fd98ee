import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createLinuxProcessTable, listPids, type LinuxProcessTableOptions } from './linux-processes.js';
import { loadNativeAddon, nativeFdIndexFunctions } from './native-addon.js';
import { createPersistentFdIndex } from './persistent-fd-index.js';

const hasScanFds = loadNativeAddon().binding?.scanFds !== undefined;
const hasFdIndex = nativeFdIndexFunctions() !== undefined;

// A fake procfs: the same files and links the kernel shows, so parsing, the holder index and
// its re-validation are tested without depending on what runs on this host. Pipe ends need
// real descriptor links (their mode bits): test/linux-processes.test.ts covers them.
const root = mkdtempSync(join(tmpdir(), 'stopd-fakeproc-'));
after(() => rmSync(root, { recursive: true, force: true }));

const BTIME = 1_700_000_000;
writeFileSync(join(root, 'stat'), `cpu  1 2 3 4\nbtime ${BTIME}\nprocesses 9\n`);
mkdirSync(join(root, 'self'));
const fifo = join(root, 'fifo');
execFileSync('mkfifo', [fifo]);

function addProcess(
  pid: number,
  spec: { comm: string; ppid: number; uid: [number, number]; start: number; tty?: number; cmdline?: string; fds: Record<number, string> },
): void {
  const dir = join(root, String(pid));
  mkdirSync(join(dir, 'fd'), { recursive: true });
  writeFileSync(
    join(dir, 'stat'),
    `${pid} (${spec.comm}) S ${spec.ppid} ${pid} ${spec.ppid} ${spec.tty ?? 0} -1 4194304 1 0 0 0 0 0 0 0 20 0 1 0 ${spec.start} 1 1\n`,
  );
  writeFileSync(join(dir, 'status'), `Name:\t${spec.comm}\nUid:\t${spec.uid[0]}\t${spec.uid[1]}\t0\t0\n`);
  writeFileSync(join(dir, 'cmdline'), spec.cmdline ?? '');
  for (const [fd, link] of Object.entries(spec.fds)) symlinkSync(link, join(dir, 'fd', fd));
}

addProcess(100, {
  comm: 'sshd',
  ppid: 1,
  uid: [0, 0],
  start: 250,
  cmdline: 'sshd: alice [priv]\0',
  fds: { 0: '/dev/null', 3: 'socket:[5001]', 4: 'pipe:[6001]', 5: 'anon_inode:[eventfd]' },
});
addProcess(200, {
  comm: 'bash (login)',
  ppid: 100,
  uid: [1000, 1000],
  start: 1000,
  tty: 34818,
  cmdline: '-bash\0--login\0',
  fds: { 1: 'socket:[5001]', 7: 'pipe:[6001]', 8: fifo, 9: '/nonexistent/gone' },
});
addProcess(300, { comm: 'cron', ppid: 1, uid: [1000, 0], start: 10, fds: { 3: 'socket:[5001]' } });
// A process that vanished between readdir of /proc and reading it: its directory is empty.
mkdirSync(join(root, '400'));

void test('listPids returns the numeric entries of the proc root in ascending order', () => {
  assert.deepEqual(listPids(root), [100, 200, 300, 400]);
});

void test('getProcess reads stat, status, cmdline and socket and pipe descriptors', () => {
  const table = createLinuxProcessTable({ procRoot: root, clockTicks: 100 });
  assert.deepEqual(table.getProcess(100), {
    pid: 100,
    ppid: 1,
    name: 'sshd',
    uid: { real: 0, effective: 0 },
    startTime: new Date(BTIME * 1000 + 2500).toISOString(),
    tty: null,
    priority: 20,
    nice: 0,
    pgid: 100,
    sid: 1,
    cmdline: ['sshd: alice [priv]'],
    // The fake's links are symlinks (mode 0777), so the pipe reads as opened for both.
    fds: [
      { fd: 3, kind: 'socket', inode: 5001 },
      { fd: 4, kind: 'pipe', inode: 6001, end: 'both' },
    ],
  });
});

void test('getProcess keeps a comm with spaces and parentheses, decodes the tty and sees named pipes', () => {
  const table = createLinuxProcessTable({ procRoot: root, clockTicks: 100 });
  const bash = table.getProcess(200);
  assert.ok(bash);
  assert.equal(bash.name, 'bash (login)');
  assert.equal(bash.tty, '/dev/pts/2');
  assert.deepEqual(bash.cmdline, ['-bash', '--login']);
  assert.equal(bash.fds.length, 3);
  const named = bash.fds.find((fd) => fd.fd === 8);
  assert.equal(named?.kind, 'pipe');
  assert.ok(named.inode > 0);
});

void test('getProcess honours clockTicks and readCmdline false', () => {
  const table = createLinuxProcessTable({ procRoot: root, clockTicks: 250, readCmdline: false });
  const bash = table.getProcess(200);
  assert.equal(bash?.startTime, new Date(BTIME * 1000 + 4000).toISOString());
  assert.deepEqual(bash.cmdline, []);
});

void test('getProcess returns undefined for missing, vanished and invalid pids', () => {
  const table = createLinuxProcessTable({ procRoot: root });
  assert.equal(table.getProcess(400), undefined);
  assert.equal(table.getProcess(999_999), undefined);
  assert.equal(table.getProcess(0), undefined);
  assert.equal(table.getProcess(-1), undefined);
  assert.equal(table.getProcess(1.5), undefined);
});

void test('createLinuxProcessTable defaults clock ticks to 100 when auxv is unreadable', () => {
  const table = createLinuxProcessTable({ procRoot: root });
  assert.equal(table.getProcess(100)?.startTime, new Date(BTIME * 1000 + 2500).toISOString());
});

// Every way of indexing holders on the same fake procfs: the JavaScript scan, the addon's
// scanFds, and its persistent index (which, without schedstat files in the fake, rescans every
// process at every refresh: the fallback must still be right).
const scanners: { name: string; skip: string | false; options: () => LinuxProcessTableOptions }[] = [
  { name: 'JavaScript scan', skip: false, options: () => ({ procRoot: root, nativeScan: false }) },
  { name: 'native scan', skip: hasScanFds ? false : 'the addon is not built with scanFds', options: () => ({ procRoot: root, nativeScan: true }) },
  {
    name: 'persistent index',
    skip: hasFdIndex ? false : 'the addon is not built with the fd index',
    options: () => {
      const fdIndex = createPersistentFdIndex({ procRoot: root });
      assert.ok(fdIndex);
      after(() => fdIndex.close());
      return { fdIndex };
    },
  },
];
for (const { name: scanner, skip, options } of scanners) {
  const skipNative = { skip };

  void test(`findHolders reports every holder of a socket and both holders of a pipe (${scanner})`, skipNative, () => {
    const table = createLinuxProcessTable(options());
    assert.deepEqual(table.findHolders(5001), [100, 200, 300]);
    assert.deepEqual(table.findHolders(6001), [100, 200]);
    assert.deepEqual(table.findHolders(424242), []);
    assert.deepEqual(table.findHolders(0), []);
  });

  void test(`findHolders puts processes of ownerUid first and still reports the others (${scanner})`, skipNative, () => {
    const table = createLinuxProcessTable(options());
    // Effective uid counts: pid 300 has real 1000 but effective 0.
    assert.deepEqual(table.findHolders(5001, 1000), [200, 100, 300]);
    assert.deepEqual(table.findHolders(5001, 0), [100, 300, 200]);
    assert.deepEqual(table.findHolders(5001, 4242), [100, 200, 300]);
  });

  void test(`findHolders drops holders whose descriptor changed since the scan until refresh rescans (${scanner})`, skipNative, () => {
    const table = createLinuxProcessTable(options());
    assert.deepEqual(table.findHolders(5001), [100, 200, 300]);
    const link = join(root, '300', 'fd', '3');
    unlinkSync(link);
    symlinkSync('socket:[5002]', link);
    try {
      assert.deepEqual(table.findHolders(5001), [100, 200]);
      // The index is one snapshot: the new socket is only seen after refresh().
      assert.deepEqual(table.findHolders(5002), []);
      table.refresh();
      assert.deepEqual(table.findHolders(5002), [300]);
    } finally {
      unlinkSync(link);
      symlinkSync('socket:[5001]', link);
    }
  });
}

for (const { name: scanner, skip, options } of scanners.slice(1)) {
  void test(`getProcess answers descriptors from the ${scanner} until refresh`, { skip }, () => {
    const table = createLinuxProcessTable(options());
    assert.deepEqual(table.findHolders(5001), [100, 200, 300]);
    const link = join(root, '300', 'fd', '3');
    unlinkSync(link);
    symlinkSync('socket:[5002]', link);
    try {
      // One snapshot: the scan already read pid 300's descriptors, so they are not read again.
      assert.deepEqual(table.getProcess(300)?.fds, [{ fd: 3, kind: 'socket', inode: 5001 }]);
      table.refresh();
      assert.deepEqual(table.getProcess(300)?.fds, [{ fd: 3, kind: 'socket', inode: 5002 }]);
      assert.deepEqual(table.findHolders(5002), [300]);
      assert.deepEqual(table.getProcess(300)?.fds, [{ fd: 3, kind: 'socket', inode: 5002 }]);
    } finally {
      unlinkSync(link);
      symlinkSync('socket:[5001]', link);
    }
  });

  void test(`findHolders with the ${scanner} re-validates a named pipe holder by the FIFO inode`, { skip }, () => {
    const table = createLinuxProcessTable(options());
    const inode = statSync(fifo).ino;
    assert.deepEqual(table.findHolders(inode), [200]);
    assert.deepEqual(table.findHolders(inode), [200]);
    const link = join(root, '200', 'fd', '8');
    unlinkSync(link);
    symlinkSync('/dev/null', link);
    try {
      assert.deepEqual(table.findHolders(inode), []);
    } finally {
      unlinkSync(link);
      symlinkSync(fifo, link);
    }
  });

  void test(`getProcess after findHolders returns the same descriptors with the ${scanner} as with the JavaScript scan`, { skip }, () => {
    const js = createLinuxProcessTable({ procRoot: root, nativeScan: false, clockTicks: 100 });
    const native = createLinuxProcessTable({ ...options(), clockTicks: 100 });
    assert.deepEqual(native.findHolders(6001), js.findHolders(6001));
    for (const pid of [100, 200, 300, 400]) assert.deepEqual(native.getProcess(pid), js.getProcess(pid));
  });
}

void test('createLinuxProcessTable refuses an index of another proc root', { skip: hasFdIndex ? false : 'the addon is not built with the fd index' }, () => {
  const fdIndex = createPersistentFdIndex({ procRoot: root });
  assert.ok(fdIndex);
  try {
    assert.throws(() => createLinuxProcessTable({ procRoot: '/proc', fdIndex }), {
      name: 'HostLookupError',
      message: `Cannot use a descriptor index of ${root} for processes in /proc`,
    });
  } finally {
    fdIndex.close();
  }
});

void test('a closed persistent index throws HostLookupError and closing again is harmless', { skip: hasFdIndex ? false : 'the addon is not built with the fd index' }, () => {
  const fdIndex = createPersistentFdIndex({ procRoot: root });
  assert.ok(fdIndex);
  fdIndex.refresh();
  assert.deepEqual(
    fdIndex.holders(5001).map((holder) => holder.pid),
    [100, 200, 300],
  );
  fdIndex.close();
  fdIndex.close();
  assert.throws(() => fdIndex.refresh(), { name: 'HostLookupError', message: `Cannot use the descriptor index of ${root}: it is closed` });
  assert.throws(() => fdIndex.holders(5001), { name: 'HostLookupError' });
});

void test('createPersistentFdIndex throws HostLookupError for a missing proc root', { skip: hasFdIndex ? false : 'the addon is not built with the fd index' }, () => {
  assert.throws(() => createPersistentFdIndex({ procRoot: join(root, 'missing') }), {
    name: 'HostLookupError',
    message: `Cannot index the descriptors in ${join(root, 'missing')}: ENOENT`,
  });
});

void test('isLocalAddress accepts loopback, this host\'s interface addresses and their mapped forms', () => {
  const table = createLinuxProcessTable({ procRoot: root });
  assert.equal(table.isLocalAddress('127.0.0.1'), true);
  assert.equal(table.isLocalAddress('127.45.6.7'), true);
  assert.equal(table.isLocalAddress('::1'), true);
  assert.equal(table.isLocalAddress('0:0:0:0:0:0:0:1'), true);
  assert.equal(table.isLocalAddress('::ffff:127.0.0.1'), true);
  for (const infos of Object.values(networkInterfaces())) {
    for (const info of infos ?? []) {
      assert.equal(table.isLocalAddress(info.address), true, info.address);
      if (info.family === 'IPv4') assert.equal(table.isLocalAddress(`::ffff:${info.address}`), true);
    }
  }
});

void test('isLocalAddress rejects foreign and malformed addresses', () => {
  const table = createLinuxProcessTable({ procRoot: root });
  // 198.51.100.0/24 and 2001:db8::/32 are documentation ranges, never configured here.
  assert.equal(table.isLocalAddress('198.51.100.77'), false);
  assert.equal(table.isLocalAddress('2001:db8::77'), false);
  assert.equal(table.isLocalAddress('not an address'), false);
  assert.equal(table.isLocalAddress(''), false);
});

void test('getProcess keeps the first 4 KiB of a long command line with the length and SHA-256 of the whole', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stopd-fakeproc-cmdline-'));
  try {
    writeFileSync(join(dir, 'stat'), `cpu  1 2 3 4\nbtime ${BTIME}\n`);
    const write = (pid: number, cmdline: Buffer): void => {
      mkdirSync(join(dir, String(pid), 'fd'), { recursive: true });
      writeFileSync(join(dir, String(pid), 'stat'), `${pid} (x) S 1 ${pid} 1 0 -1 4194304 1 0 0 0 0 0 0 0 20 0 1 0 100 1 1\n`);
      writeFileSync(join(dir, String(pid), 'status'), 'Name:\tx\nUid:\t0\t0\t0\t0\n');
      writeFileSync(join(dir, String(pid), 'cmdline'), cmdline);
    };
    const long = Buffer.from(Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(4, '0')}${'a'.repeat(1019)}\0`).join(''));
    assert.equal(long.length, 1_024_000);
    const exact = Buffer.from(`${'b'.repeat(4095)}\0`);
    write(10, long);
    write(11, exact);
    const table = createLinuxProcessTable({ procRoot: dir, clockTicks: 100, nativeScan: false });
    const cut = table.getProcess(10);
    assert.ok(cut);
    assert.deepEqual(cut.cmdlineTruncated, { bytes: long.length, sha256: createHash('sha256').update(long).digest('hex') });
    assert.equal(cut.cmdline.join('\0').length, 4095, 'the first 4096 bytes: four arguments of 1 023 bytes and their NULs');
    assert.equal(cut.cmdline.length, 4);
    assert.ok(cut.cmdline[0]?.startsWith('0000aaa'));
    const whole = table.getProcess(11);
    assert.deepEqual(whole?.cmdline, ['b'.repeat(4095)]);
    assert.equal(whole.cmdlineTruncated, undefined, 'a command line of exactly 4 KiB is whole');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
