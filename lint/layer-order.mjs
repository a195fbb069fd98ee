/**
 * ESLint rule `stopd/layer-order`: imports under `src/` point down only (DESIGN.md, README
 * Layout). A rule of our own rather than `no-restricted-imports`, because it resolves each
 * specifier against the importing file: `../trace/x.js`, `../../src/trace/x.js` and
 * `./../trace/x.js` are one module to it, where a pattern would see three strings.
 *
 * Every kind of import counts: `import`, `import type` (a type still ties the lower layer to
 * the upper one's shapes), `export ... from`, `import()` and `import('...').Type`.
 *
 * Options (eslint.config.js): `layers`, the directories under `root` from lowest to highest;
 * `below`, files under `root` below every layer (they import nothing of the tree); `above`,
 * files above every layer; `testOnly`, modules that do not ship (package.json `files`), which
 * only unit tests may import. A unit test (`*.test.ts`) also has a layer, that of its code,
 * so it cannot reach up either. Anything else under `root` is an error until it is given a
 * place in the order.
 */
import { dirname, relative, resolve, sep } from 'node:path';

/** @type {import('eslint').Rule.RuleModule} */
const rule = {
  meta: {
    type: 'problem',
    docs: { description: 'Imports under src/ point down the layer order only' },
    schema: [
      {
        type: 'object',
        properties: {
          root: { type: 'string' },
          packageName: { type: 'string' },
          layers: { type: 'array', items: { type: 'string' }, minItems: 1 },
          below: { type: 'array', items: { type: 'string' } },
          above: { type: 'array', items: { type: 'string' } },
          testOnly: { type: 'array', items: { type: 'string' } },
        },
        required: ['root', 'layers'],
        additionalProperties: false,
      },
    ],
    messages: {
      upward:
        "'{{source}}' is {{target}}, which is above {{file}}: imports point down only ({{order}}).",
      unplaced: "{{what}} is in no layer: give it a place in the layer order (eslint.config.js, README Layout).",
      testOnly: "'{{source}}' is test support that does not ship in the package: only unit tests may import it.",
      outside: "'{{source}}' is outside {{root}}/, which is all that ships: code under {{root}}/ may not import it.",
    },
  },
  create(context) {
    const options = context.options[0];
    const root = resolve(context.cwd, options.root);
    const layers = options.layers;
    const below = new Map((options.below ?? []).map((path) => [stem(path), path]));
    const above = new Map((options.above ?? []).map((path) => [stem(path), path]));
    const testOnly = new Set((options.testOnly ?? []).map(stem));
    const order = [...layers].reverse().join(' > ');

    /** Rank of a path relative to `root` (lower imports nothing higher), and how to name it. */
    const place = (path) => {
      const key = stem(path);
      if (below.has(key)) return { rank: -1, name: `${below.get(key)} (below every layer)` };
      if (above.has(key)) return { rank: layers.length, name: `${above.get(key)} (above every layer)` };
      const at = layers.indexOf(path.split('/')[0]);
      return at < 0 ? undefined : { rank: at, name: `layer ${layers[at]}` };
    };

    const filename = context.filename;
    const own = relative(root, filename).split(sep).join('/');
    if (own.startsWith('..')) return {};
    // Unit tests and the test support itself may use test support; nothing else may.
    const isTest = /\.test\.[cm]?[jt]s$/.test(own) || testOnly.has(stem(own));
    const from = place(own);

    const check = (node, source) => {
      if (typeof source !== 'string') return;
      let target;
      const name = options.packageName;
      if (name !== undefined && (source === name || source.startsWith(`${name}/`))) target = [...above.values()][0] ?? 'index';
      else if (source.startsWith('.') || source.startsWith('/')) target = relative(root, resolve(dirname(filename), source)).split(sep).join('/');
      else return; // node: modules and dependencies: the compiler checks the pure layers
      if (target.startsWith('..')) {
        if (!isTest) context.report({ node, messageId: 'outside', data: { source, root: options.root } });
        return;
      }
      if (testOnly.has(stem(target))) {
        if (!isTest) context.report({ node, messageId: 'testOnly', data: { source } });
      }
      const to = place(target);
      if (to === undefined) {
        context.report({ node, messageId: 'unplaced', data: { what: `'${source}' (${options.root}/${target})` } });
        return;
      }
      if (from !== undefined && to.rank > from.rank) {
        context.report({ node, messageId: 'upward', data: { source, target: to.name, file: from.name, order } });
      }
    };
    const literal = (node) => (node?.type === 'Literal' ? node.value : undefined);

    return {
      Program(node) {
        if (from === undefined) context.report({ node, loc: { line: 1, column: 0 }, messageId: 'unplaced', data: { what: `${options.root}/${own}` } });
      },
      ImportDeclaration: (node) => check(node, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value),
      ExportAllDeclaration: (node) => check(node, node.source.value),
      ImportExpression: (node) => check(node, literal(node.source)),
      TSImportType: (node) => check(node, literal(node.argument?.literal ?? node.argument)),
      TSExternalModuleReference: (node) => check(node, literal(node.expression)),
    };
  },
};

/** `errors.ts`, `errors.js` and `errors` name one module. */
function stem(path) {
  return path.replace(/\.(d\.)?[cm]?[jt]s$/, '');
}

export default rule;
