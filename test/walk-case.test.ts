/**
 * The walk's CASE/UCO bundle (issue 16) validated against the CASE 1.4.0 ontology the way the
 * reference validator `case_validate` does (test/support/case-validate.ts: a JSON-LD processor,
 * the undefined-concept check, SHACL validation with the ontology's shapes). case_validate
 * itself (PyPI case-utils, on pySHACL) cannot be installed here; see that file.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { renderWalkCase } from '../src/cli/walk/walk-case.js';
import { buildWalkFigure } from '../src/cli/walk/walk-figures.js';
import { validateCase } from './support/case-validate.js';

const OBSERVABLE = 'https://ontology.unifiedcyberontology.org/uco/observable/';
const CORE = 'https://ontology.unifiedcyberontology.org/uco/core/';
const RDF_TYPE = 'http://www.w3.org/1999/02/22-rdf-syntax-ns#type';

describe('the walk CASE bundle', () => {
  test('conforms to CASE 1.4.0 and holds each hop as a network connection with its Community ID, processes and accounts', async () => {
    const doc = buildWalkFigure({ evil: '"}<>\u202e' });
    const report = await validateCase(renderWalkCase(doc));
    assert.deepEqual(report.problems.filter((problem) => problem.severity !== 'Info'), []);
    assert.equal(report.conforms, true);
    const typesOf = (type: string): string[] => report.quads.filter((q) => q.predicate.value === RDF_TYPE && q.object.value === type).map((q) => q.subject.value);
    assert.equal(typesOf(`${OBSERVABLE}NetworkConnection`).length, doc.hops.length);
    assert.equal(typesOf('https://ontology.caseontology.org/case/investigation/InvestigativeAction').length, 1);
    assert.equal(typesOf('https://ontology.caseontology.org/case/investigation/ProvenanceRecord').length, doc.hops.length);
    const processes = doc.hops.flatMap((hop) => hop.summary?.keyProcesses ?? []);
    assert.equal(typesOf(`${OBSERVABLE}Process`).length, processes.length);
    assert.ok(typesOf(`${OBSERVABLE}Account`).length >= doc.hops.length);
    const ids = report.quads.filter((q) => q.predicate.value === `${CORE}externalIdentifier`).map((q) => q.object.value).sort();
    assert.deepEqual(ids, doc.hops.map((hop) => hop.summary?.communityId ?? 'missing').sort());
    const exhibits = report.quads.filter((q) => q.predicate.value === 'https://ontology.caseontology.org/case/investigation/exhibitNumber').map((q) => q.object.value);
    assert.deepEqual(exhibits.sort(), doc.hops.map((hop) => hop.token).sort(), 'each record named by its token');
  });

  test('the validation fails a bundle that breaks the ontology (the check can fail)', async () => {
    const bundle = renderWalkCase(buildWalkFigure()) as { '@graph': Record<string, unknown>[] };
    const broken = structuredClone(bundle);
    const facet = broken['@graph'].flatMap((node) => (node['core:hasFacet'] as Record<string, unknown>[] | undefined) ?? []).find((f) => f['@type'] === 'observable:ProcessFacet');
    assert.ok(facet);
    facet['observable:pid'] = 'not a number';
    facet['observable:processNumber'] = 1;
    const report = await validateCase(broken);
    assert.equal(report.conforms, false);
    assert.ok(report.problems.some((p) => p.severity === 'Violation' && p.message.includes(`${OBSERVABLE}pid`)), JSON.stringify(report.problems));
    assert.ok(report.problems.some((p) => p.severity === 'Undefined' && p.message.includes(`${OBSERVABLE}processNumber`)));
  });
});
