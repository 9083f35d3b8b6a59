// Sends graphql-js's standard introspection query, with every option on, to the GraphQL
// endpoint given as the first argument (with the optional bearer token in OMS_TOKEN), and builds
// a client schema from the answer, as GraphiQL, Apollo Rover, graphql-codegen and the like do.
// Prints one JSON line: what came back and what the client schema holds. Exits non-zero on any
// failure, printing why. Run by tests/api/introspection.rs.
import { buildClientSchema, getIntrospectionQuery, printSchema } from 'graphql';

const endpoint = process.argv[2];
const query = getIntrospectionQuery({
  descriptions: true,
  specifiedByUrl: true,
  directiveIsRepeatable: true,
  schemaDescription: true,
  inputValueDeprecation: true,
  oneOf: true,
});
const headers = { 'content-type': 'application/json' };
if (process.env.OMS_TOKEN) headers.authorization = `Bearer ${process.env.OMS_TOKEN}`;
const started = performance.now();
const response = await fetch(endpoint, {
  method: 'POST',
  headers,
  body: JSON.stringify({ query, operationName: 'IntrospectionQuery' }),
});
const text = await response.text();
const millis = Math.round(performance.now() - started);
const body = JSON.parse(text);
if (body.errors) {
  console.error(JSON.stringify(body.errors));
  process.exit(1);
}
const schema = buildClientSchema(body.data);
console.log(JSON.stringify({
  status: response.status,
  bytes: text.length,
  millis,
  queryType: schema.getQueryType()?.name,
  mutationType: schema.getMutationType()?.name,
  subscriptionType: schema.getSubscriptionType()?.name,
  types: Object.keys(schema.getTypeMap()).length,
  hasOrder: Boolean(schema.getType('Order')),
  sdlBytes: printSchema(schema).length,
}));
