// Lint is part of `npm test`: floating promises are errors, because a forgotten await in a
// daemon that must fsync before it replies is a correctness bug, not a style issue.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import layerOrder from './lint/layer-order.mjs';

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'node_modules/**', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // node:test's test()/describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // DESIGN's layer order, lowest first: upper may import lower, never the reverse.
    // errors.ts (the coded errors every layer throws) is below all; index.ts (the package
    // entry) is above all. figures.ts and fake-host.ts are test support: not in the package.
    files: ['src/**/*.ts'],
    plugins: { stopd: { rules: { 'layer-order': layerOrder } } },
    rules: {
      'stopd/layer-order': [
        'error',
        {
          root: 'src',
          packageName: 'stopd',
          layers: ['protocol', 'host', 'trace', 'evidence', 'daemon', 'cli'],
          below: ['errors.ts'],
          above: ['index.ts'],
          testOnly: ['host/fake-host.ts', 'trace/figures.ts', 'cli/walk/walk-figures.ts'],
        },
      ],
    },
  },
  {
    files: ['**/*.mjs', 'scripts/**'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: { process: 'readonly', console: 'readonly' },
    },
  },
);
