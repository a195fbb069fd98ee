import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeRateLimitReport, OTHER_REQUESTERS, RateLimiter, refill, type RateLimits } from './rate-limiter.js';

const LIMITS: RateLimits = { analysis: { perMinute: 60, burst: 3 }, id: { perMinute: 600, burst: 10 } };

/** A limiter on a clock the test moves by hand. */
function limiterAt(options: { limits?: RateLimits; maxRequesters?: number } = {}): { limiter: RateLimiter; clock: { now: number } } {
  const clock = { now: 1_000_000 };
  const limiter = new RateLimiter({ ...(options.limits ?? LIMITS), ...(options.maxRequesters === undefined ? {} : { maxRequesters: options.maxRequesters }), now: () => clock.now });
  return { limiter, clock };
}

function allowedCount(limiter: RateLimiter, requester: string, rateClass: 'analysis' | 'id', tries: number): number {
  let allowed = 0;
  for (let i = 0; i < tries; i++) if (limiter.admit(requester, rateClass).allowed) allowed += 1;
  return allowed;
}

test('RateLimiter.admit allows a burst, then refuses until tokens come back at the rate', () => {
  const { limiter, clock } = limiterAt();
  assert.equal(allowedCount(limiter, '192.0.2.1', 'analysis', 10), 3, 'the burst');
  clock.now += 999;
  assert.equal(limiter.admit('192.0.2.1', 'analysis').allowed, false, 'not yet one token (60 per minute: one a second)');
  clock.now += 1;
  assert.equal(limiter.admit('192.0.2.1', 'analysis').allowed, true, 'one token after a second');
  assert.equal(limiter.admit('192.0.2.1', 'analysis').allowed, false);
  clock.now += 60_000;
  assert.equal(allowedCount(limiter, '192.0.2.1', 'analysis', 10), 3, 'never more than the burst, however long the pause');
});

test('RateLimiter.admit keeps requesters and classes apart', () => {
  const { limiter } = limiterAt();
  assert.equal(allowedCount(limiter, '192.0.2.1', 'analysis', 5), 3);
  assert.equal(allowedCount(limiter, '192.0.2.2', 'analysis', 5), 3, 'another requester has its own bucket');
  assert.equal(allowedCount(limiter, '192.0.2.1', 'id', 20), 10, 'ID draws from its own, looser bucket');
});

test('RateLimiter.admit with 0 per minute never refuses and remembers nothing', () => {
  const { limiter } = limiterAt({ limits: { analysis: { perMinute: 0, burst: 1 }, id: LIMITS.id } });
  assert.equal(allowedCount(limiter, '192.0.2.1', 'analysis', 1000), 1000);
  assert.equal(limiter.size, 0);
});

test('RateLimiter.admit marks only the first refusal of a window', () => {
  const { limiter } = limiterAt();
  allowedCount(limiter, '192.0.2.1', 'analysis', 3);
  assert.deepEqual(limiter.admit('192.0.2.1', 'analysis'), { allowed: false, first: true });
  assert.deepEqual(limiter.admit('192.0.2.1', 'analysis'), { allowed: false, first: false });
  limiter.takeReports();
  assert.deepEqual(limiter.admit('192.0.2.1', 'analysis'), { allowed: false, first: true }, 'a new window');
});

test('RateLimiter.takeReports gives one report per refused requester and window, then starts again', () => {
  const { limiter, clock } = limiterAt();
  const start = clock.now;
  allowedCount(limiter, '192.0.2.1', 'analysis', 53);
  allowedCount(limiter, '192.0.2.1', 'id', 12);
  allowedCount(limiter, '192.0.2.2', 'analysis', 2);
  clock.now += 30_000;
  assert.deepEqual(limiter.takeReports(), [{ requester: '192.0.2.1', windowStart: start, windowEnd: start + 30_000, refused: { analysis: 50, id: 2 } }]);
  assert.deepEqual(limiter.takeReports(), [], 'nothing refused since');
});

test('RateLimiter.takeReports forgets requesters whose buckets are full again', () => {
  const { limiter, clock } = limiterAt();
  allowedCount(limiter, '192.0.2.1', 'analysis', 1);
  allowedCount(limiter, '192.0.2.2', 'analysis', 3);
  clock.now += 1500;
  limiter.takeReports();
  assert.equal(limiter.size, 1, 'the first one is full again (one token back), the second is not (1.5 of 3)');
  clock.now += 1500;
  limiter.takeReports();
  assert.equal(limiter.size, 0);
});

test('RateLimiter stays within maxRequesters, reporting the refusals of those it forgets', () => {
  const { limiter, clock } = limiterAt({ maxRequesters: 100 });
  allowedCount(limiter, '192.0.2.1', 'analysis', 5);
  for (let i = 0; i < 10_000; i++) limiter.admit(`2001:db8:${i.toString(16)}::/64`, 'id');
  assert.equal(limiter.size, 100);
  clock.now += 1;
  const reports = limiter.takeReports();
  assert.deepEqual(reports.map((report) => [report.requester, report.refused.analysis]), [['192.0.2.1', 2]]);
});

test('RateLimiter sums up forgotten requesters past its bound on pending reports', () => {
  const { limiter } = limiterAt({ maxRequesters: 1, limits: { analysis: { perMinute: 1, burst: 1 }, id: LIMITS.id } });
  for (let i = 0; i < 3000; i++) {
    const requester = `10.0.${i >> 8}.${i & 255}`;
    limiter.admit(requester, 'analysis');
    limiter.admit(requester, 'analysis'); // refused: one each
  }
  const reports = limiter.takeReports();
  // At most 1024 pending reports of forgotten requesters, plus one per requester still remembered.
  assert.ok(reports.length <= 1024 + 1, `${reports.length} reports`);
  const total = reports.reduce((sum, report) => sum + report.refused.analysis, 0);
  assert.equal(total, 3000, 'every refusal is counted, none dropped');
  assert.equal(reports.at(-2)?.requester, OTHER_REQUESTERS, 'the last pending report sums up the rest');
});

test('RateLimiter.configure applies new rates to buckets already held', () => {
  const { limiter, clock } = limiterAt();
  allowedCount(limiter, '192.0.2.1', 'analysis', 3);
  limiter.configure({ analysis: { perMinute: 6000, burst: 3 }, id: LIMITS.id });
  clock.now += 10;
  assert.equal(limiter.admit('192.0.2.1', 'analysis').allowed, true, '100 a second: a token every 10 ms');
  limiter.configure({ analysis: { perMinute: 0, burst: 1 }, id: LIMITS.id });
  assert.equal(allowedCount(limiter, '192.0.2.1', 'analysis', 100), 100, 'lifted');
});

test('refill never exceeds the burst and earns nothing when the clock steps back', () => {
  const bucket = { tokens: 0, at: 10_000 };
  refill(bucket, { perMinute: 120, burst: 5 }, 9_000);
  assert.deepEqual(bucket, { tokens: 0, at: 10_000 });
  refill(bucket, { perMinute: 120, burst: 5 }, 11_000);
  assert.deepEqual(bucket, { tokens: 2, at: 11_000 });
  refill(bucket, { perMinute: 120, burst: 5 }, 100_000);
  assert.deepEqual(bucket, { tokens: 5, at: 100_000 });
});

test('describeRateLimitReport makes the rate-limited ledger entry', () => {
  const entry = describeRateLimitReport(
    { requester: '2001:db8:1:2::/64', windowStart: Date.UTC(2026, 0, 1), windowEnd: Date.UTC(2026, 0, 1, 0, 1), refused: { analysis: 7, id: 0 } },
    LIMITS,
  );
  assert.deepEqual(entry, {
    kind: 'rate-limited',
    requester: '2001:db8:1:2::/64',
    window: { start: '2026-01-01T00:00:00.000Z', end: '2026-01-01T00:01:00.000Z' },
    refused: { analysis: 7, id: 0 },
    limits: { analysis: { perMinute: 60, burst: 3 }, id: { perMinute: 600, burst: 10 } },
  });
});
