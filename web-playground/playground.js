// The playground's own script (served at /playground.js: the page's Content-Security-Policy
// allows no inline script). The server puts the default headers in the page: a staff token in
// local-development mode, nothing otherwise.
'use strict';
const root = document.getElementById('graphiql');
const defaultHeaders = JSON.parse(root.dataset.defaultHeaders || '{}');
const httpUrl = new URL('/graphql', window.location.href).toString();
const wsUrl = httpUrl.replace(/^http/, 'ws') + '/ws';

// Whether the operation GraphiQL runs is a subscription. Strings and comments are blanked
// first, and only top-level definitions (depth 0) count, so fragments and field names do not.
function isSubscription({ query, operationName }) {
  const source = query.replace(/"""[\s\S]*?"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*/g, ' ');
  const operations = [];
  let depth = 0;
  const token = /[{}]|\b(query|mutation|subscription|fragment)\b\s*([_A-Za-z][_0-9A-Za-z]*)?/g;
  for (const match of source.matchAll(token)) {
    if (match[0] === '{') depth += 1;
    else if (match[0] === '}') depth -= 1;
    else if (depth === 0 && match[1] !== 'fragment') operations.push([null, null, match[1], match[2]]);
  }
  if (operations.length === 0) return false;
  const chosen = operationName
    ? operations.find((m) => m[3] === operationName)
    : operations[0];
  return Boolean(chosen) && chosen[2] === 'subscription';
}

// Queries and mutations over HTTP, subscriptions over graphql-transport-ws; the headers
// from the editor go with both (as the WebSocket connection_init payload).
function fetcher(params, options) {
  const headers = (options && options.headers) || {};
  if (isSubscription(params)) {
    return {
      subscribe(observer) {
        const client = graphqlWs.createClient({ url: wsUrl, connectionParams: headers, lazy: true });
        const dispose = client.subscribe(params, {
          next: (value) => observer.next(value),
          error: (error) => observer.error(
            error && error.code ? { message: `WebSocket closed: ${error.code} ${error.reason}` } : error),
          complete: () => observer.complete(),
        });
        return { unsubscribe() { dispose(); client.dispose(); } };
      },
    };
  }
  return fetch(httpUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
    body: JSON.stringify(params),
  }).then((response) => response.json());
}

const defaultQuery = `# Place an order, then watch it live in a second tab:
mutation Place {
  placeOrder(input: { items: [{ sku: "KB-MECH-01", quantity: 1 }] }) {
order { id status version }
userErrors { field code message }
  }
}

subscription Watch {
  orderStatusChanged {
orderId from to reason version outcome at
  }
}

query Inventory {
  inventoryItems(first: 20) {
edges { node { sku name quantity lowStock } }
  }
}
`;

ReactDOM.createRoot(root).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery,
    // A link may carry the document to open: /?query=...
    query: new URLSearchParams(window.location.search).get('query') || undefined,
    defaultHeaders: JSON.stringify(defaultHeaders, null, 2),
    defaultEditorToolsVisibility: 'headers',
    shouldPersistHeaders: false,
  }),
);
