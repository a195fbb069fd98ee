import { createHash, randomFillSync } from 'node:crypto';

/**
 * Which hash names SV records, and so the length of every token of a daemon (paper 3.1.2,
 * property 2: tokens have the same length for all request types and responses).
 * `sha256` (default, 64 hex) or `sha1` (40 hex, as in the paper's prototype).
 */
export type TokenHash = 'sha256' | 'sha1';

const BYTES: Record<TokenHash, number> = { sha256: 32, sha1: 20 };

/**
 * Random bytes drawn from the system CSPRNG 4 KiB at a time: one call per ~128 tokens instead
 * of one per token (the call, not the randomness, was the cost on the ID path). Every byte is
 * handed out once, then overwritten by the next fill.
 */
const pool = Buffer.alloc(4096);
let poolUsed = pool.length;

/** A fresh random token: lowercase hex from the system CSPRNG, as long as a record hash. */
export function generateToken(hash: TokenHash = 'sha256'): string {
  const length = BYTES[hash];
  if (poolUsed + length > pool.length) {
    randomFillSync(pool);
    poolUsed = 0;
  }
  const token = pool.toString('hex', poolUsed, poolUsed + length);
  poolUsed += length;
  return token;
}

/** The token of a record: the hex digest of its exact bytes. */
export function hashToken(bytes: Uint8Array, hash: TokenHash = 'sha256'): string {
  return createHash(hash).update(bytes).digest('hex');
}

/** The length of every token under `hash`. */
export function tokenLength(hash: TokenHash): number {
  return BYTES[hash] * 2;
}

/** A token under any supported hash, as a regular expression source: 40 or 64 lowercase hex digits. */
export const TOKEN_PATTERN = '[0-9a-f]{40}(?:[0-9a-f]{24})?';

const TOKEN = new RegExp(`^${TOKEN_PATTERN}$`);

/** Whether `text` has the shape of a token under any supported hash (for argument checks). */
export function isTokenShaped(text: string): boolean {
  return TOKEN.test(text);
}

/** The hash a token was made with, from its length: 64 hex digits SHA-256, 40 SHA-1. */
export function tokenHashOf(token: string): TokenHash | undefined {
  if (!isTokenShaped(token)) return undefined;
  return token.length === BYTES.sha256 * 2 ? 'sha256' : 'sha1';
}
