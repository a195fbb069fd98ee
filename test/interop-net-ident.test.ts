import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { startDaemon } from './support/daemon.js';
import { listen, spawnClient } from './support/peers.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;

// Perl's Net::Ident (Debian libnet-ident-perl) is a real RFC 1413 client nobody here wrote.
// It always asks port 113 of the peer, so the daemon must listen there: that needs root.
// The Perl side plays a server: it accepts a connection and asks who is behind it.
const PERL_SERVER = `
use strict; use warnings; use IO::Socket::INET; use Net::Ident;
my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, ReuseAddr => 1) or die "listen: $!";
print $l->sockport, "\\n"; STDOUT->flush;
my $c = $l->accept or die "accept: $!";
my ($user, $opsys, $error) = Net::Ident::lookup($c, 10);
print defined $user ? "user=$user opsys=$opsys\\n" : "error=$error\\n";
`;

test('Net::Ident gets a well-formed token reply from stopd', { skip: isRoot ? false : 'needs root: Net::Ident only asks port 113' }, async () => {
  const daemon = await startDaemon([], { listen: ['127.0.0.1:113'] });
  try {
    const { spawn } = await import('node:child_process');
    const perl = spawn('perl', ['-e', PERL_SERVER], { stdio: ['ignore', 'pipe', 'pipe'] });
    perl.stdout.setEncoding('utf8');
    let out = '';
    perl.stdout.on('data', (chunk: string) => (out += chunk));
    let stderr = '';
    perl.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`perl did not listen: ${stderr}`)), 10_000);
      perl.stdout.on('data', () => {
        if (out.includes('\n')) {
          clearTimeout(timer);
          resolve(Number(out.split('\n')[0]));
        }
      });
    });
    const client = await spawnClient('127.0.0.1', port);
    const exit = await new Promise<number | null>((resolve) => perl.once('exit', resolve));
    await client.stop();
    assert.equal(exit, 0, stderr);
    const result = out.split('\n')[1] ?? '';
    assert.match(result, /^user=[0-9a-f]{64} opsys=OTHER$/, `Net::Ident said: ${result} ${stderr}`);
  } finally {
    await daemon.stop();
  }
});

test('Net::Ident sees an error, not a user, for a connection the daemon host accepted', { skip: isRoot ? false : 'needs root: Net::Ident only asks port 113' }, async () => {
  // Perl connects out to our listener and asks about its own outbound socket's reverse:
  // from the daemon's side, the queried connection is one this host accepted.
  const daemon = await startDaemon([], { listen: ['127.0.0.1:113'] });
  const service = await listen('127.0.0.1');
  try {
    const script = `
use strict; use warnings; use IO::Socket::INET; use Net::Ident;
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => ${service.port}) or die "connect: $!";
my ($user, $opsys, $error) = Net::Ident::lookup($s, 10);
print defined $user ? "user=$user\\n" : "error=$error\\n";`;
    const { stdout } = await run('perl', ['-e', script]);
    assert.match(stdout.trim(), /^error=NO-USER$/);
  } finally {
    await service.close();
    await daemon.stop();
  }
});
