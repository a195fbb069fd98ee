/**
 * Framing: bytes in, lines out, with a hard cap on line length. Fed chunk by chunk as they
 * come off a socket; a line may arrive in many chunks, a chunk may hold many lines.
 */

/** One framing event. */
export type LineEvent =
  /** A complete line, without its LF or CR LF; bytes decoded one to one (latin1). */
  | { readonly kind: 'line'; readonly line: string }
  /** The current line exceeded `maxLineLength`; its remaining bytes up to the next LF are dropped. Reported once per line. */
  | { readonly kind: 'overflow' }
  /** Bytes left without an LF when {@link LineSplitter.end} was called; raw, a trailing CR is kept. */
  | { readonly kind: 'partial'; readonly line: string };

/** Options of {@link LineSplitter}. */
export interface LineSplitterOptions {
  /**
   * Largest line in bytes, CR LF not counted (default 512). RFC 1413 caps the user id at 512
   * octets and lets a client give up after 1000 characters without an EOL; a request line is
   * far shorter than either, so 512 bounds memory without refusing any real query.
   */
  readonly maxLineLength?: number;
}

const LF = 0x0a;
const CR = 0x0d;
/** Arguments per String.fromCharCode call, well below any engine's argument limit. */
const DECODE_SLICE = 8192;
const INITIAL_CAPACITY = 256;

/** Decodes bytes one to one into a string (latin1), so bytes >= 0x80 survive for the parser to reject. */
function decodeLatin1(bytes: Uint8Array): string {
  let text = '';
  for (let i = 0; i < bytes.length; i += DECODE_SLICE) {
    text += String.fromCharCode(...bytes.subarray(i, i + DECODE_SLICE));
  }
  return text;
}

/**
 * Splits a byte stream into lines ending at LF, with an optional CR before it stripped
 * (RFC 1413 specifies CR LF; bare LF is accepted because many clients send it).
 *
 * A line longer than `maxLineLength` bytes yields one `overflow` event as soon as that is
 * known, and the rest of it is discarded up to the next LF, so the caller can answer
 * `UNKNOWN-ERROR` once and carry on with the next line, or drop the connection. At most
 * `maxLineLength + 1` bytes are ever buffered (the buffer grows by doubling up to that), so
 * any chunking, down to one byte at a time, costs amortised linear time.
 */
export class LineSplitter {
  /** The cap on a line's length in bytes, CR LF not counted. */
  readonly maxLineLength: number;
  #buffer: Uint8Array;
  #length = 0;
  #discarding = false;

  constructor(options: LineSplitterOptions = {}) {
    const max = options.maxLineLength ?? 512;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new RangeError(`Invalid maxLineLength: ${max} is not a positive integer`);
    }
    this.maxLineLength = max;
    this.#buffer = new Uint8Array(Math.min(max + 1, INITIAL_CAPACITY));
  }

  /** Feeds one chunk; returns the events it completes, in order. */
  push(chunk: Uint8Array): LineEvent[] {
    const events: LineEvent[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      const lf = chunk.indexOf(LF, pos);
      const end = lf < 0 ? chunk.length : lf;
      if (!this.#discarding && this.#append(chunk.subarray(pos, end))) {
        events.push({ kind: 'overflow' });
        this.#discarding = true;
        this.#length = 0;
      }
      if (lf < 0) break;
      if (this.#discarding) {
        this.#discarding = false;
      } else {
        let length = this.#length;
        if (length > 0 && this.#buffer[length - 1] === CR) length--;
        events.push({ kind: 'line', line: decodeLatin1(this.#buffer.subarray(0, length)) });
        this.#length = 0;
      }
      pos = lf + 1;
    }
    return events;
  }

  /**
   * Ends the stream: returns a `partial` event for bytes not ended by an LF (none after an
   * overflow, which was already reported), and resets the splitter for reuse.
   */
  end(): LineEvent[] {
    const events: LineEvent[] =
      !this.#discarding && this.#length > 0
        ? [{ kind: 'partial', line: decodeLatin1(this.#buffer.subarray(0, this.#length)) }]
        : [];
    this.#length = 0;
    this.#discarding = false;
    return events;
  }

  /**
   * Appends bytes of the current line; returns true when the line is now known to be too
   * long. `maxLineLength + 1` bytes fit, because the last one may be the CR of a CR LF.
   */
  #append(bytes: Uint8Array): boolean {
    const limit = this.maxLineLength + 1;
    const room = limit - this.#length;
    if (bytes.length > room) return true;
    const needed = this.#length + bytes.length;
    if (needed > this.#buffer.length) {
      const grown = new Uint8Array(Math.min(limit, Math.max(needed, this.#buffer.length * 2)));
      grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
    }
    this.#buffer.set(bytes, this.#length);
    this.#length = needed;
    // A full buffer is only a valid line if its last byte is the CR of a CR LF still to come.
    return needed === limit && this.#buffer[needed - 1] !== CR;
  }
}
