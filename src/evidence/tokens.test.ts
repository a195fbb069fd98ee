import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateToken, hashToken, isTokenShaped, tokenLength } from './tokens.js';

test('generateToken gives distinct lowercase hex tokens of the hash length, across pool refills', () => {
  // 1 000 tokens of 32 bytes span several 4 KiB pool refills, mixed with 20-byte ones.
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i += 1) {
    const hash = i % 3 === 0 ? 'sha1' : 'sha256';
    const token = generateToken(hash);
    assert.equal(token.length, tokenLength(hash));
    assert.match(token, /^[0-9a-f]+$/);
    assert.ok(isTokenShaped(token));
    seen.add(token);
  }
  assert.equal(seen.size, 1000);
});

test('hashToken is the hex digest of the exact bytes', () => {
  assert.equal(hashToken(Buffer.from('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(hashToken(Buffer.from('abc'), 'sha1'), 'a9993e364706816aba3e25717850c26c9cd0d89d');
});
