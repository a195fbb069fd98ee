/**
 * `stopctl walk --case FILE`: the walk as a CASE/UCO JSON-LD bundle (Cyber-investigation
 * Analysis Standard Expression, on the Unified Cyber Ontology, version 1.x), the form forensic
 * tools exchange. One `investigation:InvestigativeAction` (the walk) whose results are, for
 * each hop, an `observable:NetworkConnection` (its Community ID as an external reference,
 * its ends as IP address observables), the hop's key processes and accounts, and an
 * `investigation:ProvenanceRecord` naming the token and host the evidence came from and how it
 * was verified. Terms are those of CASE 1.4 / UCO 1.4.
 *
 * Node identifiers are `kb:` IRIs derived from the walk's start token, each hop's token and the
 * object, so two runs over the same evidence give the same identifiers.
 */
import { createHash } from 'node:crypto';
import { parseIpAddress } from '../../protocol/ip-address.js';
import type { WalkDocument, WalkEndpoint, WalkHop, WalkKeyProcess } from './walk-document.js';

/** The JSON-LD context: the CASE and UCO namespaces used, and `kb:` for this bundle's nodes. */
export const CASE_CONTEXT = {
  kb: 'urn:stopd:walk:',
  action: 'https://ontology.unifiedcyberontology.org/uco/action/',
  core: 'https://ontology.unifiedcyberontology.org/uco/core/',
  identity: 'https://ontology.unifiedcyberontology.org/uco/identity/',
  investigation: 'https://ontology.caseontology.org/case/investigation/',
  observable: 'https://ontology.unifiedcyberontology.org/uco/observable/',
  tool: 'https://ontology.unifiedcyberontology.org/uco/tool/',
  xsd: 'http://www.w3.org/2001/XMLSchema#',
} as const;

type Node = Record<string, unknown> & { '@id': string; '@type': string };

/** A reference to another node of the bundle. */
function ref(id: string): { '@id': string } {
  return { '@id': id };
}

function typed(value: string | number, type: 'xsd:dateTime' | 'xsd:integer' | 'xsd:boolean'): { '@type': string; '@value': string } {
  return { '@type': type, '@value': String(value) };
}

/**
 * The walk as a CASE/UCO JSON-LD document (`@context` and `@graph`). Everything the hosts wrote
 * is kept as JSON strings (JSON-LD literals), never spliced into IRIs: identifiers are hashes.
 */
export function renderWalkCase(doc: WalkDocument): Record<string, unknown> {
  const nodes: Node[] = [];
  const id = (...parts: (string | number)[]): string =>
    `kb:${String(parts[0])}-${createHash('sha256').update(JSON.stringify([doc.start.token, doc.startedAt, ...parts])).digest('hex').slice(0, 32)}`;

  const toolId = id('tool');
  nodes.push({
    '@id': toolId,
    '@type': 'tool:Tool',
    'core:name': 'stopctl walk',
    'tool:toolType': 'Session Token Protocol (STOP) investigation',
  });

  const results: { '@id': string }[] = [];
  const objects: { '@id': string }[] = [];
  for (const hop of doc.hops) {
    const hopNodes = describeHop(hop, id);
    nodes.push(...hopNodes.nodes);
    // action:result holds UCO objects; an external reference is a characterization of one.
    results.push(...hopNodes.nodes.filter((node) => node['@type'] !== 'core:ExternalReference').map((node) => ref(node['@id'])));
    objects.push(ref(hopNodes.provenance));
  }

  const actionId = id('investigative-action');
  const ask = doc.start.ask;
  nodes.push({
    '@id': actionId,
    '@type': 'investigation:InvestigativeAction',
    'core:name': 'STOP chain walk',
    'core:description':
      `stopctl walk from ${doc.start.host} token ${doc.start.token}` +
      `${ask === undefined ? '' : ` (asked ${ask.target.address}:${ask.target.port} "${ask.request}", reply "${ask.reply}")`}` +
      `: ${doc.hops.length} hops, verdict ${doc.verdict}${doc.interrupted ? ', interrupted' : ''}; ` +
      doc.ends.map((end) => `${end.reason} at ${end.host}${end.token === null ? '' : ` (token ${end.token})`}`).join('; '),
    'action:startTime': typed(doc.startedAt, 'xsd:dateTime'),
    'action:endTime': typed(doc.finishedAt, 'xsd:dateTime'),
    // ActionStatusTypeVocab: a verified walk succeeded, a failed hop fails it, the rest is unknown.
    'action:actionStatus': doc.verdict === 'verified' && !doc.interrupted ? 'Success' : doc.verdict === 'failed' ? 'Fail' : 'Unknown',
    'action:instrument': [ref(toolId)],
    ...(objects.length === 0 ? {} : { 'action:object': objects }),
    ...(results.length === 0 ? {} : { 'action:result': results }),
  });
  return { '@context': CASE_CONTEXT, '@graph': nodes };
}

/** The nodes of one hop: addresses, the connection, accounts, processes, and the provenance record. */
function describeHop(hop: WalkHop, id: (...parts: (string | number)[]) => string): { nodes: Node[]; provenance: string } {
  const nodes: Node[] = [];
  const members: { '@id': string }[] = [];
  const summary = hop.summary;
  const connection = summary?.connection ?? null;
  if (connection !== null) {
    const src = addressNode(connection.local, id(hop.token, 'src'));
    const dst = addressNode(connection.remote, id(hop.token, 'dst'));
    nodes.push(src, dst);
    const connectionId = id(hop.token, 'connection');
    const externalReference: { '@id': string }[] = [];
    if (summary?.communityId !== undefined) {
      const referenceId = id(hop.token, 'community-id');
      nodes.push({
        '@id': referenceId,
        '@type': 'core:ExternalReference',
        'core:definingContext': 'Community ID flow hash v1 (corelight/community-id-spec), TCP, seed 0',
        'core:externalIdentifier': summary.communityId,
      });
      externalReference.push(ref(referenceId));
    }
    nodes.push({
      '@id': connectionId,
      '@type': 'observable:NetworkConnection',
      'core:name': `TCP ${show(connection.local)} -> ${show(connection.remote)} on ${hop.host}`,
      ...(externalReference.length === 0 ? {} : { 'core:externalReference': externalReference }),
      'core:hasFacet': [
        {
          '@id': id(hop.token, 'connection-facet'),
          '@type': 'observable:NetworkConnectionFacet',
          'observable:src': [ref(src['@id'])],
          'observable:dst': [ref(dst['@id'])],
          'observable:sourcePort': typed(connection.local.port, 'xsd:integer'),
          'observable:destinationPort': typed(connection.remote.port, 'xsd:integer'),
          ...(summary?.time === null || summary?.time === undefined ? {} : { 'observable:startTime': typed(summary.time, 'xsd:dateTime') }),
        },
      ],
    });
    members.push(ref(connectionId), ref(src['@id']), ref(dst['@id']));
  }
  const accounts = new Map<string, string>();
  const accountOf = (user: string | null, uid: number | null): string | undefined => {
    if (user === null && uid === null) return undefined;
    const key = `${user ?? ''}:${uid ?? ''}`;
    const existing = accounts.get(key);
    if (existing !== undefined) return existing;
    const accountId = id(hop.token, 'account', key);
    accounts.set(key, accountId);
    nodes.push({
      '@id': accountId,
      '@type': 'observable:Account',
      'core:name': `${user ?? `uid ${uid}`} on ${hop.host}`,
      'core:hasFacet': [
        {
          '@id': id(hop.token, 'account-facet', key),
          '@type': 'observable:AccountFacet',
          'observable:accountIdentifier': uid === null ? (user ?? '') : String(uid),
          'observable:isActive': typed('true', 'xsd:boolean'),
        },
        ...(user === null
          ? []
          : [{ '@id': id(hop.token, 'digital-account-facet', key), '@type': 'observable:DigitalAccountFacet', 'observable:accountLogin': user }]),
      ],
    });
    members.push(ref(accountId));
    return accountId;
  };
  if (summary !== null) accountOf(summary.user, summary.uid);
  for (const process of summary?.keyProcesses ?? []) nodes.push(processNode(process, hop, id, accountOf(process.user, process.uid)));
  for (const process of summary?.keyProcesses ?? []) members.push(ref(id(hop.token, 'process', process.pid)));

  const provenance = id(hop.token, 'provenance');
  const checks = Object.entries(hop.checks)
    .map(([name, check]) => `${name}: ${check.ok === true ? 'ok' : check.ok === false ? 'FAILED' : 'n/a'} (${check.detail})`)
    .join('; ');
  nodes.push({
    '@id': provenance,
    '@type': 'investigation:ProvenanceRecord',
    'investigation:exhibitNumber': hop.token,
    'core:name': `STOP evidence record of ${hop.host}`,
    'core:description':
      `Redeemed on ${hop.host} (via ${hop.access}) as stopctl redeem, trace and verify --json printed it; ` +
      `${hop.verified ? 'verified where it lives' : 'FAILED verification: not trusted'}. Checks: ${checks}`,
    'core:object': members.length === 0 ? [ref(id('tool'))] : members,
  });
  return { nodes, provenance };
}

function processNode(process: WalkKeyProcess, hop: WalkHop, id: (...parts: (string | number)[]) => string, account: string | undefined): Node {
  return {
    '@id': id(hop.token, 'process', process.pid),
    '@type': 'observable:Process',
    'core:name': `${process.name} [${process.pid}] on ${hop.host}`,
    ...(process.role === null ? {} : { 'core:description': `role in the record: ${process.role}` }),
    'core:hasFacet': [
      {
        '@id': id(hop.token, 'process-facet', process.pid),
        '@type': 'observable:ProcessFacet',
        'observable:pid': typed(process.pid, 'xsd:integer'),
        ...(process.cmdline === null || process.cmdline === '' ? {} : { 'observable:arguments': [process.cmdline] }),
        ...(account === undefined ? {} : { 'observable:creatorUser': ref(account) }),
      },
    ],
  };
}

/** An IP address observable (IPv4 or IPv6 by the address's form). */
function addressNode(endpoint: WalkEndpoint, nodeId: string): Node {
  const family = parseIpAddress(endpoint.address)?.family ?? (endpoint.address.includes(':') ? 6 : 4);
  const kind = family === 6 ? 'IPv6Address' : 'IPv4Address';
  return {
    '@id': nodeId,
    '@type': `observable:${kind}`,
    'core:hasFacet': [{ '@id': `${nodeId}-facet`, '@type': `observable:${kind}Facet`, 'observable:addressValue': endpoint.address }],
  };
}

function show(endpoint: WalkEndpoint): string {
  return endpoint.address.includes(':') ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`;
}
