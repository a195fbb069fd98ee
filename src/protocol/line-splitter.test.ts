import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { LineSplitter, type LineEvent } from './line-splitter.js';

const bytes = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));

/** Feeds `chunks` one by one, then ends the stream; returns every event in order. */
function run(chunks: readonly string[], maxLineLength?: number): LineEvent[] {
  const splitter = new LineSplitter(maxLineLength === undefined ? {} : { maxLineLength });
  const events = chunks.flatMap((chunk) => splitter.push(bytes(chunk)));
  return [...events, ...splitter.end()];
}

const line = (text: string): LineEvent => ({ kind: 'line', line: text });
const overflow: LineEvent = { kind: 'overflow' };

describe('LineSplitter', () => {
  test('LineSplitter splits at CR LF and at bare LF', () => {
    assert.deepEqual(run(['80,23\r\n81,24\n82,25\r\n']), [line('80,23'), line('81,24'), line('82,25')]);
  });

  test('LineSplitter keeps a CR that is not before the LF', () => {
    assert.deepEqual(run(['a\rb\n\r\r\n']), [line('a\rb'), line('\r')]);
  });

  test('LineSplitter delivers empty lines', () => {
    assert.deepEqual(run(['\r\n\n']), [line(''), line('')]);
  });

  test('LineSplitter joins a line split across writes', () => {
    assert.deepEqual(run(['80', ',1', '234 : S', 'V_REC : 5\r', '\n8', '1,2\n']), [line('80,1234 : SV_REC : 5'), line('81,2')]);
  });

  test('LineSplitter handles one-byte chunks', () => {
    assert.deepEqual(run('80,23\r\n81,24\n'.split('')), [line('80,23'), line('81,24')]);
  });

  test('LineSplitter returns the lines of one chunk in order', () => {
    const many = Array.from({ length: 1000 }, (_, i) => `${i + 1},${i + 2}\r\n`).join('');
    const events = run([many]);
    assert.equal(events.length, 1000);
    assert.deepEqual(events[999], line('1000,1001'));
  });

  test('LineSplitter delivers bytes >= 0x80 as latin1 characters', () => {
    const splitter = new LineSplitter();
    assert.deepEqual(splitter.push(Uint8Array.of(0x38, 0x30, 0xe9, 0xff, 0x00, 0x0a)), [line('80\u00e9\u00ff\0')]);
  });

  test('LineSplitter end reports a final partial line', () => {
    assert.deepEqual(run(['80,23\n81,2']), [line('80,23'), { kind: 'partial', line: '81,2' }]);
    assert.deepEqual(run(['80,23\r']), [{ kind: 'partial', line: '80,23\r' }]);
    assert.deepEqual(run(['80,23\n']), [line('80,23')]);
  });

  test('LineSplitter end resets it for reuse', () => {
    const splitter = new LineSplitter();
    splitter.push(bytes('abc'));
    assert.deepEqual(splitter.end(), [{ kind: 'partial', line: 'abc' }]);
    assert.deepEqual(splitter.end(), []);
    assert.deepEqual(splitter.push(bytes('d\n')), [line('d')]);
  });

  test('LineSplitter uses 512 bytes as the default cap', () => {
    const splitter = new LineSplitter();
    assert.equal(splitter.maxLineLength, 512);
    assert.deepEqual(splitter.push(bytes(`${'a'.repeat(512)}\r\n`)), [line('a'.repeat(512))]);
    assert.deepEqual(splitter.push(bytes(`${'a'.repeat(513)}\r\n`)), [overflow]);
  });

  test('LineSplitter accepts a line of exactly maxLineLength bytes with CR LF or LF', () => {
    assert.deepEqual(run(['12345678\r\n', '12345678\n'], 8), [line('12345678'), line('12345678')]);
    assert.deepEqual(run(['12345678', '\r', '\n'], 8), [line('12345678')]);
  });

  test('LineSplitter reports overflow once and resumes at the next line', () => {
    assert.deepEqual(run(['123456789\r\n80,23\n'], 8), [overflow, line('80,23')]);
    assert.deepEqual(run(['12345678\rX\nok\n'], 8), [overflow, line('ok')]);
  });

  test('LineSplitter reports overflow as soon as the cap is passed, before the LF', () => {
    const splitter = new LineSplitter({ maxLineLength: 8 });
    assert.deepEqual(splitter.push(bytes('12345678')), []);
    assert.deepEqual(splitter.push(bytes('9')), [overflow]);
    assert.deepEqual(splitter.push(bytes('x'.repeat(10000))), []);
    assert.deepEqual(splitter.push(bytes('yy\r\n1,2')), []);
    assert.deepEqual(splitter.push(bytes('\r\n')), [line('1,2')]);
  });

  test('LineSplitter discards a long line fed one byte at a time, without a partial at end', () => {
    const splitter = new LineSplitter({ maxLineLength: 16 });
    const events: LineEvent[] = [];
    const one = new Uint8Array(1);
    for (let i = 0; i < 200_000; i++) {
      one[0] = 0x41;
      events.push(...splitter.push(one));
    }
    events.push(...splitter.end());
    assert.deepEqual(events, [overflow]);
  });

  test('LineSplitter rejects a cap that is not a positive integer', () => {
    for (const maxLineLength of [0, -1, 1.5, Number.NaN, Infinity]) {
      assert.throws(() => new LineSplitter({ maxLineLength }), RangeError);
    }
  });
});

/** The events the whole buffer must give, computed the simple way. */
function referenceEvents(data: Uint8Array, max: number): LineEvent[] {
  const text = String.fromCharCode(...data);
  const parts = text.split('\n');
  const last = parts.pop() ?? '';
  const events: LineEvent[] = parts.map((part) => {
    const content = part.endsWith('\r') ? part.slice(0, -1) : part;
    return content.length > max ? overflow : line(content);
  });
  if (last.length > 0) {
    const fits = last.length <= max || (last.length === max + 1 && last.endsWith('\r'));
    events.push(fits ? { kind: 'partial', line: last } : overflow);
  }
  return events;
}

describe('LineSplitter properties', () => {
  const byteArb = fc.oneof(fc.constantFrom(0x0a, 0x0d, 0x41), fc.integer({ min: 0, max: 255 }));

  test('LineSplitter gives the same events for any chunking as for the whole buffer', () => {
    fc.assert(
      fc.property(
        fc.array(byteArb, { maxLength: 300 }),
        fc.array(fc.nat(300), { maxLength: 40 }),
        fc.integer({ min: 1, max: 20 }),
        (data, cuts, max) => {
          const buffer = Uint8Array.from(data);
          const offsets = [...new Set(cuts.map((c) => c % (buffer.length + 1)))].sort((a, b) => a - b);
          const splitter = new LineSplitter({ maxLineLength: max });
          const events: LineEvent[] = [];
          let start = 0;
          for (const offset of [...offsets, buffer.length]) {
            events.push(...splitter.push(buffer.subarray(start, offset)));
            start = offset;
          }
          events.push(...splitter.end());
          const whole = new LineSplitter({ maxLineLength: max });
          assert.deepEqual(events, [...whole.push(buffer), ...whole.end()]);
          assert.deepEqual(events, referenceEvents(buffer, max));
        },
      ),
      { numRuns: 3000 },
    );
  });
});
