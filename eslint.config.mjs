// ESLint flat config (typescript-eslint), as the JupyterLab extension template has it, plus
// one house rule: server strings reach the DOM as text, so no HTML-parsing property is set.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const NO_HTML = {
  selector:
    "AssignmentExpression > MemberExpression.left[property.name=/^(innerHTML|outerHTML)$/], CallExpression[callee.property.name='insertAdjacentHTML']",
  message:
    'Set server strings with textContent (names are plain text, never markup).'
};

export default tseslint.config(
  {
    ignores: [
      'node_modules/',
      'lib/',
      'extension/src/generated/',
      'crowdsource/',
      '.venv/',
      'bench/',
      'docs/',
      'tests/'
    ]
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['extension/**/*.ts'],
    languageOptions: { globals: globals.browser },
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/naming-convention': [
        'error',
        {
          selector: 'interface',
          format: ['PascalCase'],
          custom: { regex: '^I[A-Z]', match: true }
        }
      ],
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none' }],
      curly: ['error', 'all'],
      eqeqeq: ['error', 'smart'],
      'no-restricted-syntax': ['error', NO_HTML]
    }
  },
  {
    files: ['**/*.mjs', '**/*.mts'],
    languageOptions: { globals: globals.node }
  }
);
