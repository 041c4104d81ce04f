// typescript-eslint with type-checked rules over every TypeScript file the project type-checks.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', 'cdktf.out/**', 'dist/**', '**/*.js', '**/*.mjs', '**/*.cjs', '.ci/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // The ports (store, dead letters, twin query, ...) are async; in-memory adapters and test fakes keep
      // `async` without an await so that a throw is a rejection, exactly as with the real adapters.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // Tests inspect parsed JSON (synthesized Terraform, HTTP bodies, reports) whose type is `any` by nature;
    // production code gets the unsafe-any rules in full.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
);
