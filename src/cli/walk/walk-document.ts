/**
 * The document `stopctl walk --json` prints: the whole walk across hosts, one object per hop.
 * The HTML report (walk-html.ts) and the CASE/UCO bundle (walk-case.ts) are rendered from it,
 * so everything they show must be here. Its schema is documented in the README ("The walk's
 * JSON"); add fields, never change the meaning of one (`version` says which schema).
 */
import type { TraceView } from '../format-trace.js';

/** The schema version of {@link WalkDocument}. */
export const WALK_DOCUMENT_VERSION = 1;

/** One upstream entry of a hop's trace, exactly as `stopctl trace --json` gives it in `upstream`. */
export type WalkUpstreamEntry = TraceView['upstream'][number];

/** An `{address, port}` pair, as in records. */
export interface WalkEndpoint {
  readonly address: string;
  readonly port: number;
}

/** The outcome of one of a hop's three checks. */
export interface WalkCheck {
  /**
   * true: checked and sound; false: failed, or could not be checked (see `detail`); null: does
   * not apply (only the link of a start token given on the command line: nothing links to it).
   */
  readonly ok: boolean | null;
  /** One sentence: what was compared, or why it failed or could not be checked. */
  readonly detail: string;
}

/** A process of the hop's record worth naming in the story (holders of the queried socket first). */
export interface WalkKeyProcess {
  readonly pid: number;
  readonly name: string;
  readonly user: string | null;
  readonly uid: number | null;
  readonly role: string | null;
  readonly cmdline: string | null;
}

/** One host reached on the walk and the token it was asked about. */
export interface WalkHop {
  /** Index of this hop in `hops` (stable: the order hops were reached, breadth-first). */
  readonly index: number;
  /** The host walked to: the address (or name) the SSH command was given, or the `--local` name. */
  readonly host: string;
  /** The token this host issued, redeemed there. */
  readonly token: string;
  /** 0 for the start; n for a host reached through n upstream links. */
  readonly depth: number;
  /** The hop whose trace named this token (null for the start). */
  readonly parent: number | null;
  /** The parent's upstream entry that named this token (null for the start). */
  readonly via: WalkUpstreamEntry | null;
  /** How the store was read: `ssh` (the `--ssh` command) or `local` (this host's store). */
  readonly access: 'ssh' | 'local';
  /** True only when the record, the ledger chain and the link (where one applies) were all checked and sound. */
  readonly verified: boolean;
  /** The three checks behind `verified`. */
  readonly checks: {
    /** The record (or ID token's ledger entry) against its token: `redeem`'s verdict. */
    readonly record: WalkCheck;
    /** The host's whole store: `verify` (records against tokens, the ledger's hash chain). */
    readonly ledger: WalkCheck;
    /** The link from the parent: the token this host issued is for that SID and connection. */
    readonly link: WalkCheck;
  };
  /** Summary for the story (from `redeem`); null where `redeem` gave nothing usable. */
  readonly summary: {
    readonly type: string | null;
    readonly sid: string | null;
    readonly time: string | null;
    readonly connection: { readonly local: WalkEndpoint; readonly remote: WalkEndpoint } | null;
    readonly user: string | null;
    readonly uid: number | null;
    readonly hostname: string | null;
    readonly keyProcesses: readonly WalkKeyProcess[];
    /** The Community ID of the hop's connection, when a renderer or the record provides one. */
    readonly communityId?: string;
  } | null;
  /** That host's `stopctl redeem TOKEN --json` document, as it printed it (null if none was read). */
  readonly redeem: Readonly<Record<string, unknown>> | null;
  /** That host's trace entries for the token (`stopctl trace TOKEN --json`'s `upstream`). */
  readonly upstream: readonly WalkUpstreamEntry[];
  /** That host's `stopctl verify --json` report (null if it could not be read). */
  readonly verify: Readonly<Record<string, unknown>> | null;
  /** Exit statuses of the three remote commands (null: not run or no status). */
  readonly exitStatus: { readonly redeem: number | null; readonly trace: number | null; readonly verify: number | null };
  /** Seconds spent reaching this host's store. */
  readonly elapsedMs: number;
}

/** Why a branch of the walk ended. */
export type WalkEndReason =
  /** The hop's record has no upstream: the chain starts here (the user sat here, or nothing was behind). */
  | 'origin'
  /** The host still had upstream questions without an outcome in its ledger when the walk gave up waiting. */
  | 'pending'
  /** The host's STOP daemon refused, timed out, answered an error...: the trace entry's outcome says which. */
  | 'upstream-outcome'
  /** The host named by an upstream token could not be reached over SSH (or its stopctl failed). */
  | 'unreachable'
  /** The host does not know the token (it is not the host that issued it, or the ledger lost it). */
  | 'unknown-token'
  /** The hop failed verification: its evidence is not trusted, so its upstream tokens were not followed. */
  | 'verification-failed'
  /** The hop bound (`--max-hops`) was reached. */
  | 'hop-limit'
  /** The host bound (`--max-hosts`) was reached. */
  | 'host-limit'
  /** This (host, token) was already visited on another branch. */
  | 'already-visited'
  /** Ctrl-C (SIGINT or SIGTERM) ended the walk before this branch was followed. */
  | 'interrupted';

/** How one branch ended: at a hop, or at an upstream token the walk did not (or could not) follow. */
export interface WalkEnd {
  /** The hop the branch ended at or after (null: the start itself could not be reached). */
  readonly hop: number | null;
  readonly reason: WalkEndReason;
  /** The host the branch would go to next (the upstream host), or the hop's own host. */
  readonly host: string;
  /** The token to take to that host's administrator (null when there is none). */
  readonly token: string | null;
  /** One sentence for people. */
  readonly message: string;
}

/** The start of the walk: a token the investigator holds, or the reply to the `--ask` request. */
export interface WalkStart {
  readonly host: string;
  readonly token: string;
  /** With `--ask`: the request sent and the reply line received. */
  readonly ask?: {
    readonly target: WalkEndpoint;
    readonly request: string;
    readonly reply: string;
    /** The connection asked about, as the asked host sees it: its CL_PORT to CL_IP (or us) at SV_PORT. */
    readonly connection: { readonly local: WalkEndpoint | null; readonly remote: WalkEndpoint | null };
    readonly sid: string | null;
    readonly type: string;
  };
}

/** The whole walk: what `stopctl walk --json` prints and the HTML and CASE renderers read. */
export interface WalkDocument {
  readonly version: typeof WALK_DOCUMENT_VERSION;
  readonly tool: 'stopctl walk';
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly start: WalkStart;
  readonly limits: { readonly maxHops: number; readonly maxHosts: number };
  /** Every hop reached, breadth-first. */
  readonly hops: readonly WalkHop[];
  /** How each branch ended. */
  readonly ends: readonly WalkEnd[];
  /** True when Ctrl-C ended the walk: `hops` and `ends` hold what was gathered until then. */
  readonly interrupted: boolean;
  /**
   * `verified`: every hop verified and no branch cut by a failure; `failed`: some hop failed
   * verification; `incomplete`: no hop failed, but some branch ended unreachable or interrupted.
   */
  readonly verdict: 'verified' | 'failed' | 'incomplete';
}
