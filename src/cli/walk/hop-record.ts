/**
 * A hop's evidence record read back from the `stopctl redeem --json` document the walk kept
 * (`WalkHop.redeem`). That document came from another host and may be anything: it is turned
 * back into record shape and checked by the record format's own parser (`parseRecord`), so
 * the HTML report and the CASE bundle only ever draw a well-formed record.
 */
import { formatCanonicalJson, type EvidenceRecord } from '../../evidence/record.js';
import { parseRecord } from '../../evidence/record-reader.js';
import type { WalkHop } from './walk-document.js';

/** The record behind a hop, or why there is none to draw. */
export type HopRecord = { readonly ok: true; readonly record: EvidenceRecord } | { readonly ok: false; readonly reason: string };

/**
 * The SV record of a hop from its redeem document: the redeem JSON's nulls (categories not
 * saved) become absent fields, `analysisProblems` the record's `problems`; the salt, which
 * redeem does not show, reads as zeros (nothing here is hashed: the hop's own host verified
 * the record). ID tokens and unreadable records have no record.
 */
export function readHopRecord(hop: WalkHop): HopRecord {
  const redeem = hop.redeem;
  if (redeem === null) return { ok: false, reason: 'nothing was read from the host' };
  if (!Array.isArray(redeem.processes) || typeof redeem.connection !== 'object') {
    return { ok: false, reason: typeof redeem.error === 'string' ? 'the record could not be read there' : 'the token stands for no record (an ID token)' };
  }
  const saved = Array.isArray(redeem.saved) ? (redeem.saved as unknown[]) : [];
  const request = asObject(redeem.request);
  const processes = (redeem.processes as unknown[]).map((value) => {
    const process = asObject(value);
    if (process === undefined) return value;
    const { cmdline, sockets, pipes, ...rest } = process;
    return {
      ...rest,
      ...(cmdline === null || cmdline === undefined ? {} : { cmdline }),
      ...(saved.includes('sockets') ? { sockets } : {}),
      ...(saved.includes('pipes') ? { pipes } : {}),
    };
  });
  const candidate = {
    version: redeem.version,
    salt: '0'.repeat(32),
    time: redeem.time,
    type: redeem.type,
    ...(redeem.sid === null || redeem.sid === undefined ? {} : { sid: redeem.sid }),
    request: {
      line: request?.line,
      requester: request?.requester,
      ...(request?.clientIp === null || request?.clientIp === undefined ? {} : { clientIp: request.clientIp }),
    },
    connection: redeem.connection,
    ...(redeem.host === null || redeem.host === undefined ? {} : { host: redeem.host }),
    ...(saved.includes('processes') ? { processes, links: redeem.links, channels: redeem.channels } : {}),
    upstream: redeem.upstream,
    vanished: redeem.vanished,
    denied: redeem.denied,
    truncated: redeem.truncated,
    problems: redeem.analysisProblems ?? [],
    ...(redeem.utmp === null || redeem.utmp === undefined ? {} : { utmp: redeem.utmp }),
    saved: redeem.saved,
  };
  try {
    return { ok: true, record: parseRecord(Buffer.from(formatCanonicalJson(candidate))) };
  } catch (error) {
    return { ok: false, reason: `the redeem document is not a record: ${error instanceof Error ? error.message : String(error)}` };
  }
}

function asObject(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}
