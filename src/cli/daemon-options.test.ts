import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LIVE_OPTIONS, type DaemonOptions } from '../daemon/daemon.js';
import { createStreamLogger } from '../daemon/logger.js';
import { buildDaemonOptions, DAEMON_OPTIONS, planReload } from './daemon-options.js';
import type { OptionSpec, OptionValue } from './options.js';

const log = createStreamLogger({ write: () => true });

function build(settings: ReadonlyMap<string, OptionValue>): DaemonOptions {
  return buildDaemonOptions(settings, { log, origin: (name) => `--${name}` });
}

/** The fields of two option sets that differ (the logger aside). */
function changedFields(before: DaemonOptions, after: DaemonOptions): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  keys.delete('log');
  return [...keys].filter((key) => JSON.stringify(before[key as keyof DaemonOptions]) !== JSON.stringify(after[key as keyof DaemonOptions]));
}

/**
 * A value of `spec` other than its default, and the settings it needs beside it. A setting added
 * to the table without a case here fails the test below: decide how it reloads, then add it.
 */
function sampleChange(spec: OptionSpec, caFile: string): { value: OptionValue; needs?: [string, OptionValue][] } {
  if (spec.kind === 'flag') {
    if (spec.name === 'syslog-tls') return { value: true, needs: [['syslog', '192.0.2.7:6514']] };
    return { value: true };
  }
  if (spec.kind === 'integer') {
    const min = spec.min ?? 0;
    return { value: spec.default === min ? min + 1 : min };
  }
  const samples: Record<string, { value: OptionValue; needs?: [string, OptionValue][] }> = {
    listen: { value: ['127.0.0.1:0'] },
    store: { value: '/var/lib/stopd-other' },
    'token-hash': { value: 'sha1' },
    save: { value: ['processes'] },
    'ledger-key': { value: '/root/initial-key' },
    syslog: { value: '192.0.2.7:514' },
    'syslog-ca': { value: caFile, needs: [['syslog', '192.0.2.7:6514'], ['syslog-tls', true]] },
    'max-store-bytes': { value: '2G' },
    'ledger-segment-bytes': { value: '8M' },
    'ledger-max-bytes': { value: '2G' },
    history: { value: 'off' },
    'process-index': { value: 'schedstat' },
    'history-retention': { value: '7d' },
    'history-max-bytes': { value: '2G' },
    'history-ring-records': { value: '8192' },
  };
  const sample = samples[spec.name];
  if (sample === undefined) return assert.fail(`no sample value for --${spec.name}: add one to this test`);
  return sample;
}

test('a setting marked live in the table changes only options the daemon reconfigures, a restart one none of them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stopd-options-'));
  try {
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
    const live = new Set<string>(LIVE_OPTIONS);
    for (const spec of DAEMON_OPTIONS) {
      const { value, needs = [] } = sampleChange(spec, caFile);
      const before = build(new Map(needs));
      const after = build(new Map([...needs, [spec.name, value]]));
      const changed = changedFields(before, after);
      assert.ok(changed.length > 0, `--${spec.name} ${JSON.stringify(value)} changes no option`);
      if (spec.reload === 'live') {
        assert.deepEqual(changed.filter((key) => !live.has(key)), [], `--${spec.name} is live but changes options read only at start`);
      } else {
        assert.deepEqual(changed.filter((key) => live.has(key)), [], `--${spec.name} needs a restart but changes options applied on reload`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('planReload keeps changed restart settings at their running value and names them, in table order', () => {
  const running = new Map<string, OptionValue>([
    ['max-lookups', 4],
    ['unknown-error', false],
    ['ledger-retention', 30],
  ]);
  const next = new Map<string, OptionValue>([
    ['unknown-error', true],
    ['max-lookups', 3],
    ['rate-id', 10],
    ['store', '/var/lib/stopd-other'],
  ]);
  const plan = planReload(running, next);
  assert.deepEqual(plan.kept, ['store', 'max-lookups', 'ledger-retention']);
  assert.equal(plan.settings.get('max-lookups'), 4, 'a changed restart setting keeps its running value');
  assert.equal(plan.settings.get('ledger-retention'), 30, 'a restart setting left out of the file keeps its running value');
  assert.equal(plan.settings.has('store'), false, 'a restart setting new in the file stays at its running default');
  assert.equal(plan.settings.get('unknown-error'), true, 'live settings apply');
  assert.equal(plan.settings.get('rate-id'), 10);
  // The settings in force are what the next SIGHUP compares with: the same file again names nothing new.
  assert.deepEqual(planReload(plan.settings, plan.settings).kept, []);
});

test('planReload counts a setting left out as its default', () => {
  const plan = planReload(new Map(), new Map<string, OptionValue>([['max-lookups', 16], ['max-store-bytes', '1G'], ['listen', ['[::]:113']]]));
  assert.deepEqual(plan.kept, []);
});

test('--history-ring-records takes auto or a power of two from 64 to 1048576, and says so otherwise', () => {
  assert.equal(build(new Map()).historyRingRecords, undefined);
  assert.equal(build(new Map([['history-ring-records', 'auto']])).historyRingRecords, undefined);
  assert.equal(build(new Map([['history-ring-records', '65536']])).historyRingRecords, 65_536);
  for (const bad of ['0', '32', '1000', '2097152', 'many', '8k']) {
    assert.throws(
      () => build(new Map([['history-ring-records', bad]])),
      new RegExp(`--history-ring-records must be auto or a power of two from 64 to 1048576 \\(e\\.g\\. 8192\\), not "${bad}"`),
    );
  }
});
