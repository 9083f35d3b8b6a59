// Places an order and follows it to its final status, as a storefront would: the mutation over
// HTTP with urql, the order's changes over graphql-ws (the WebSocket at /graphql/ws), every
// operation typed by graphql-codegen from oms's schema. Once the order is CONFIRMED it cancels
// it, so the order ends (CANCELLED, or REJECTED if it could not be filled).
//
//   OMS_URL=http://127.0.0.1:8080 OMS_TOKEN=$(oms token --dev --sub alice --role customer) \
//   OMS_SKU=KB-MECH-01 npm start
//
// Prints one JSON line per status the order reaches; exits 0 once it is final, 1 on an error.

import { Client, fetchExchange, subscriptionExchange } from '@urql/core';
import { createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';
import { graphql } from './gql/index.js';
import { OrderStatus } from './gql/graphql.js';

const url = process.env.OMS_URL ?? 'http://127.0.0.1:8080';
const token = process.env.OMS_TOKEN;
const sku = process.env.OMS_SKU ?? 'KB-MECH-01';
if (!token) {
  console.error('set OMS_TOKEN to a customer token (oms token --dev --sub alice --role customer)');
  process.exit(2);
}

const PlaceOrder = graphql(`
  mutation PlaceOrder($input: PlaceOrderInput!) {
    placeOrder(input: $input) {
      order { id status version total { amount currency } }
      userErrors { field code message }
    }
  }
`);

const CancelOrder = graphql(`
  mutation CancelOrder($input: UpdateOrderStatusInput!) {
    updateOrderStatus(input: $input) { accepted userErrors { code message } }
  }
`);

const FollowOrder = graphql(`
  subscription FollowOrder($orderId: ID!) {
    orderStatusChanged(orderId: $orderId, afterVersion: 0) {
      orderId from to version outcome reason
    }
  }
`);

const FINAL = new Set<OrderStatus>([OrderStatus.Cancelled, OrderStatus.Rejected, OrderStatus.Delivered]);

const ws = createWsClient({
  url: url.replace(/^http/, 'ws') + '/graphql/ws',
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
  // A closed connection is retried (1001 going away, 4401 token expired needs a new token).
  shouldRetry: (event) => (event as { code?: number }).code === 1001,
});

const client = new Client({
  url: `${url}/graphql`,
  fetchOptions: { headers: { authorization: `Bearer ${token}` } },
  exchanges: [
    fetchExchange,
    subscriptionExchange({
      forwardSubscription(request) {
        const input = { ...request, query: request.query ?? '' };
        return { subscribe: (sink) => ({ unsubscribe: ws.subscribe(input, sink) }) };
      },
    }),
  ],
});

async function main(): Promise<void> {
  const placed = await client
    .mutation(PlaceOrder, { input: { items: [{ sku, quantity: 1 }] } })
    .toPromise();
  if (placed.error) throw placed.error;
  const payload = placed.data?.placeOrder;
  if (!payload?.order) throw new Error(`refused: ${JSON.stringify(payload?.userErrors)}`);
  const order = payload.order;
  console.log(JSON.stringify({ placed: order.id, status: order.status, total: order.total }));

  await new Promise<void>((resolve, reject) => {
    let cancelling = false;
    const { unsubscribe } = client.subscription(FollowOrder, { orderId: order.id }).subscribe((result) => {
      if (result.error) {
        unsubscribe();
        reject(result.error);
        return;
      }
      const change = result.data?.orderStatusChanged;
      if (!change || change.outcome !== 'APPLIED') return;
      console.log(JSON.stringify({ order: change.orderId, status: change.to, version: change.version }));
      if (FINAL.has(change.to)) {
        unsubscribe();
        resolve();
      } else if (change.to === OrderStatus.Confirmed && !cancelling) {
        cancelling = true;
        client
          .mutation(CancelOrder, { input: { orderId: order.id, status: OrderStatus.Cancelled, reason: 'example client' } })
          .toPromise()
          .then((cancelled) => {
            const answer = cancelled.data?.updateOrderStatus;
            if (cancelled.error || !answer?.accepted) {
              reject(cancelled.error ?? new Error(JSON.stringify(answer?.userErrors)));
            }
          }, reject);
      }
    });
  });
}

main()
  .then(() => ws.dispose())
  .catch((error: unknown) => {
    console.error(error);
    ws.dispose();
    process.exit(1);
  });
