/**
 * The pure trace layer: from a host view, the process/IPC closure of a connection and its
 * upstream candidates. The build checks that it stays pure (`src/trace/tsconfig.json` has no
 * ambient types, so node: modules, `process` and timers do not compile here).
 */
export { resolveClosure, DEFAULT_MAX_PROCESSES, DEFAULT_MAX_IPC_PER_PROCESS } from './closure.js';
export { checkHolderVisibility, type HolderVisibilityFacts, type UnseenHolderReason } from './holder-visibility.js';
export {
  DEFAULT_CLOSURE_LIMITS,
  DEFAULT_UNFOLLOWED_UNIX_PATHS,
  MAX_LISTED_PIDS,
  MAX_PAIR_LINKS,
  type AnalysisProblem,
  type Closure,
  type ClosureChannel,
  type ClosureIpc,
  type ClosureLink,
  type ClosureOtherSocket,
  type ClosurePipe,
  type ClosureProcess,
  type ClosureSocket,
  type ClosureTcpSocket,
  type ClosureUnixSocket,
  type PortRange,
  type ResolveClosureOptions,
  type TcpDirection,
  type UpstreamCandidate,
} from './types.js';
export { captureConnection, DEFAULT_CAPTURE_MAX_PROCESSES, type CapturedConnection, type CapturedUpstream, type CaptureOptions } from './history-capture.js';
