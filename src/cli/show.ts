/**
 * Showing host-supplied text to a person: everything stopctl prints from a record or the
 * ledger came from the inspected host and may be hostile (a process can name itself with
 * terminal escape sequences; a request line can hold anything).
 */
import type { Endpoint } from '../host/types.js';

/** `address:port`, IPv6 in brackets, the address escaped by {@link show}. */
export function showEndpoint(endpoint: Endpoint): string {
  const address = show(endpoint.address);
  return address.includes(':') ? `[${address}]:${endpoint.port}` : `${address}:${endpoint.port}`;
}

/**
 * Host-supplied text made safe for a terminal: backslash, C0 and C1 controls, DEL, line and
 * paragraph separators and the bidirectional overrides (which can reorder what is displayed)
 * are written as `\\`, `\n`, `\t`, `\xNN` or `\u{NNNN}`.
 */
export function show(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/[\\\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu, (char) => {
    const code = char.codePointAt(0) ?? 0;
    if (char === '\\') return '\\\\';
    if (char === '\n') return '\\n';
    if (char === '\t') return '\\t';
    if (char === '\r') return '\\r';
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}

/**
 * Text that stopd stored already escaped (upstream replies and messages, which it writes as
 * printable ASCII with `\\` and `\xNN`): shown as stored, so a backslash is not doubled once
 * more; anything a terminal could act on is still escaped, in case the ledger was altered.
 */
export function showStored(text: string): string {
  return show(text).replaceAll('\\\\', '\\');
}

/** Text in double quotes, escaped by {@link show}, with `"` escaped too. */
export function quote(text: string): string {
  return `"${show(text).replaceAll('"', '\\"')}"`;
}


/** Stored-escaped text ({@link showStored}) in double quotes, with `"` escaped too. */
export function quoteStored(text: string): string {
  return `"${showStored(text).replaceAll('"', '\\"')}"`;
}
