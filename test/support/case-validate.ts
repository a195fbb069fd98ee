/**
 * Validation of a CASE/UCO JSON-LD bundle, done the way the reference validator
 * `case_validate` (PyPI case-utils, which runs pySHACL) does it, with JavaScript tools because
 * neither case-utils nor pySHACL can be installed here (PyPI is out of reach and Debian
 * packages neither):
 *
 * 1. the JSON-LD is turned into RDF by a real JSON-LD processor (`jsonld`), in safe mode, so a
 *    term the context does not define is an error rather than silently dropped;
 * 2. every IRI in the CASE and UCO namespaces used as a class or property must be one the
 *    ontology defines (case_validate's "undefined concepts" check);
 * 3. the data graph, with the ontology mixed in (as pySHACL's `ont_graph`, so `sh:class`
 *    sees subclasses), is validated against the ontology's SHACL shapes by
 *    `rdf-validate-shacl` (SHACL Core: the ontology's few SHACL-SPARQL constraints are not run).
 *
 * The ontology is CASE 1.4.0 as case-utils ships it (test/fixtures/case/).
 */
import { readFileSync } from 'node:fs';
import jsonld from 'jsonld';
import { Parser, Store, type Quad } from 'n3';
import SHACLValidator from 'rdf-validate-shacl';

const ONTOLOGY_FILE = new URL('../../../test/fixtures/case/case-1.4.0.ttl', import.meta.url);
const CASE_NAMESPACES = ['https://ontology.unifiedcyberontology.org/', 'https://ontology.caseontology.org/'];
const RDF_TYPE = 'http://www.w3.org/1999/02/22-rdf-syntax-ns#type';
const SH = 'http://www.w3.org/ns/shacl#';

/** One problem found, in a sentence. */
export interface CaseProblem {
  readonly severity: 'Violation' | 'Warning' | 'Info' | 'Undefined';
  readonly message: string;
}

/** The outcome: `conforms` as case_validate means it (no violation, no undefined concept). */
export interface CaseReport {
  readonly conforms: boolean;
  readonly problems: readonly CaseProblem[];
  /** The data's triples (for tests that look at what the bundle says). */
  readonly quads: readonly Quad[];
  /** SHACL-SPARQL constraints of the ontology not run (rdf-validate-shacl does SHACL Core only). */
  readonly sparqlSkipped: number;
}

let ontology: Quad[] | undefined;

function loadOntology(): Quad[] {
  ontology ??= new Parser({ format: 'text/turtle' }).parse(readFileSync(ONTOLOGY_FILE, 'utf8'));
  return ontology;
}

/** Validates a JSON-LD document against CASE 1.4.0 as described above. */
export async function validateCase(document: object): Promise<CaseReport> {
  const nquads = (await jsonld.toRDF(document, { format: 'application/n-quads', safe: true } as jsonld.Options.ToRdf)) as unknown as string;
  const quads = new Parser({ format: 'N-Quads' }).parse(nquads);
  const ontologyQuads = loadOntology();
  const defined = new Set(ontologyQuads.map((quad) => quad.subject.value));
  const problems: CaseProblem[] = [];
  const inNamespace = (iri: string): boolean => CASE_NAMESPACES.some((namespace) => iri.startsWith(namespace));
  const used = new Set<string>();
  for (const quad of quads) {
    if (inNamespace(quad.predicate.value)) used.add(quad.predicate.value);
    if (quad.predicate.value === RDF_TYPE && inNamespace(quad.object.value)) used.add(quad.object.value);
  }
  for (const iri of [...used].sort()) if (!defined.has(iri)) problems.push({ severity: 'Undefined', message: `undefined concept ${iri}` });

  // rdf-validate-shacl implements SHACL Core, not SHACL-SPARQL: the ontology's few sh:sparql
  // constraints are left out of the shapes (and counted in `sparqlSkipped`); pySHACL runs them.
  const shapeQuads = ontologyQuads.filter((quad) => quad.predicate.value !== `${SH}sparql`);
  const sparqlSkipped = ontologyQuads.length - shapeQuads.length;
  const shapes = new Store(shapeQuads);
  const data = new Store([...quads, ...ontologyQuads]);
  // The ontology file is the merge of every module its owl:imports name: nothing more to load.
  const report = await new SHACLValidator(shapes, { importGraph: () => new Store() }).validate(data);
  for (const result of report.results) {
    const severity = (result.severity?.value ?? `${SH}Violation`).slice(SH.length) as CaseProblem['severity'];
    const message = result.message.map((term) => term.value).join('; ');
    problems.push({ severity, message: `${result.focusNode?.value ?? '?'} ${result.path?.value ?? ''}: ${message || result.sourceConstraintComponent?.value}` });
  }
  const conforms = !problems.some((problem) => problem.severity === 'Violation' || problem.severity === 'Undefined');
  return { conforms, problems, quads, sparqlSkipped };
}
