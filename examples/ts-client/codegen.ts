// graphql-codegen: types for every operation in src/, from the schema oms serves
// (schema.graphql at the top level, which a test keeps equal to the served one).
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: '../../schema.graphql',
  // Imports with .js extensions, as Node's ES modules need.
  emitLegacyCommonJSImports: false,
  documents: ['src/**/*.ts', '!src/gql/**/*'],
  generates: {
    './src/gql/': {
      preset: 'client',
      config: { useTypeImports: true, scalars: { DateTime: 'string' } },
    },
  },
};

export default config;
