//! The authorization matrix: every query, mutation and subscription, and every nested field that
//! carries an order's private data, asked by each kind of viewer. One table ([`matrix`]) says what
//! each viewer must get; the tests run it over HTTP and over WebSocket, and scan every error
//! message it produces for internals and for another user's data.

use crate::helpers::{
    wait_for_live_subscriptions, wait_until_caught_up, wait_until_outbox_empty, Protocol,
    Subscription, TestApp, SECRET,
};
use serde_json::{json, Value};

/// Who asks. The order the matrix is mostly about, [`World::a`], belongs to alice.
#[derive(Copy, Clone, Debug, PartialEq)]
enum Viewer {
    /// No token at all.
    Anonymous = 0,
    /// alice, the customer who owns the order.
    Owner = 1,
    /// bob, a customer who does not.
    OtherCustomer = 2,
    /// staff-1.
    Staff = 3,
}

const VIEWERS: [Viewer; 4] = [
    Viewer::Anonymous,
    Viewer::Owner,
    Viewer::OtherCustomer,
    Viewer::Staff,
];

/// What one viewer must get for one operation.
#[derive(Clone, Debug)]
enum Expect {
    /// No error, and the operation's field is exactly this. A userError is compared by its `code`
    /// only; its message is scanned for leaks.
    Data(Value),
    /// A top-level error with this `extensions.code` (HTTP 200), and no value for the field.
    Error(&'static str),
}

const UNAUTHENTICATED: Expect = Expect::Error("UNAUTHENTICATED");
const FORBIDDEN: Expect = Expect::Error("FORBIDDEN");
const NOT_FOUND: Expect = Expect::Error("NOT_FOUND");
const BAD_USER_INPUT: Expect = Expect::Error("BAD_USER_INPUT");
const NULL: Expect = Expect::Data(Value::Null);

fn data(value: &Value) -> Expect {
    Expect::Data(value.clone())
}

/// One operation of the matrix.
struct Row {
    /// What is asked, as a failure names it.
    operation: &'static str,
    /// One top-level field; its value is what is judged.
    document: &'static str,
    variables: Value,
    /// For [`VIEWERS`]: anonymous, the owner, another customer, staff.
    expected: [Expect; 4],
    /// A subscription to every visible order: once everyone has subscribed, staff move alice's
    /// second order and then bob's order to RECEIVED, and each viewer's first change is judged.
    changes_after_subscribing: bool,
}

fn row(
    operation: &'static str,
    document: &'static str,
    variables: Value,
    expected: [Expect; 4],
) -> Row {
    Row {
        operation,
        document,
        variables,
        expected,
        changes_after_subscribing: false,
    }
}

impl Row {
    fn with_changes_after_subscribing(mut self) -> Row {
        self.changes_after_subscribing = true;
        self
    }

    /// How many viewers a subscription row answers with data: each holds one live subscription.
    fn live_subscriptions(&self) -> i64 {
        self.expected
            .iter()
            .filter(|expected| matches!(expected, Expect::Data(_)))
            .count() as i64
    }

    fn is_subscription(&self) -> bool {
        self.document.trim_start().starts_with("subscription")
    }

    /// The operation's top-level field.
    fn field(&self) -> &str {
        let selection = self.document.split_once('{').expect("a selection").1;
        let selection = selection.trim_start();
        let end = selection
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(selection.len());
        &selection[..end]
    }
}

/// The idempotency key alice, bob and staff-1 each placed their first order with.
const KEY: &str = "retry-1";
/// A well-formed order id that nobody has.
const NOBODYS_ORDER: &str = "0190c0c0-0000-7000-8000-000000000000";

/// Four CONFIRMED orders of one MUG each, placed in this order (ids are time-ordered).
struct World {
    alice: String,
    bob: String,
    staff: String,
    /// alice's order, placed with [`KEY`].
    a: String,
    /// alice's second order; the request matrix cancels it, the subscription matrix moves it.
    a2: String,
    /// bob's order, placed with the same [`KEY`].
    b: String,
    /// staff-1's order, placed with the same [`KEY`].
    s: String,
}

impl World {
    async fn create(app: &TestApp) -> World {
        app.stock("MUG", 10).await;
        let (alice, bob, staff) = (app.customer("alice"), app.customer("bob"), app.staff());
        let a = place_confirmed(app, &alice, Some(KEY)).await;
        let a2 = place_confirmed(app, &alice, None).await;
        let b = place_confirmed(app, &bob, Some(KEY)).await;
        let s = place_confirmed(app, &staff, Some(KEY)).await;
        World {
            alice,
            bob,
            staff,
            a,
            a2,
            b,
            s,
        }
    }

    fn token(&self, viewer: Viewer) -> Option<&str> {
        match viewer {
            Viewer::Anonymous => None,
            Viewer::Owner => Some(&self.alice),
            Viewer::OtherCustomer => Some(&self.bob),
            Viewer::Staff => Some(&self.staff),
        }
    }

    /// User ids and order ids that `viewer` may not learn.
    fn private_to_others(&self, viewer: Viewer) -> Vec<&str> {
        let (a, a2, b, s) = (&*self.a, &*self.a2, &*self.b, &*self.s);
        match viewer {
            Viewer::Anonymous => vec!["alice", "bob", "staff-1", a, a2, b, s],
            Viewer::Owner => vec!["bob", "staff-1", b, s],
            Viewer::OtherCustomer => vec!["alice", "staff-1", a, a2, s],
            Viewer::Staff => vec![],
        }
    }

    /// A WebSocket connection of `viewer` (anonymous: `connection_init` without a token).
    async fn connect(&self, app: &TestApp, viewer: Viewer) -> Subscription {
        match self.token(viewer) {
            Some(token) => Subscription::connect(app, token, Protocol::TransportWs).await,
            None => Subscription::try_connect(app, json!({}), Protocol::TransportWs)
                .await
                .expect("an anonymous connection is acknowledged"),
        }
    }

    /// Staff move alice's second order to RECEIVED, wait until it is applied, then move bob's.
    async fn move_a2_then_b(&self, app: &TestApp) {
        for id in [&self.a2, &self.b] {
            let asked = app.update_status(&self.staff, id, "RECEIVED").await;
            assert_eq!(asked["accepted"], true, "{asked}");
            app.wait_for_status(&self.staff, id, "RECEIVED").await;
        }
    }
}

/// Places an order of one MUG and waits until the inventory check has confirmed it.
async fn place_confirmed(app: &TestApp, token: &str, key: Option<&str>) -> String {
    let payload = app.place_order(token, &[("MUG", 1)], key).await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    let id = payload["order"]["id"]
        .as_str()
        .expect("order id")
        .to_owned();
    app.wait_for_status(token, &id, "CONFIRMED").await;
    id
}

/// The matrix. Rows run in this order, each for anonymous, owner, other customer, staff in turn;
/// only rows after the queries change anything.
fn matrix(w: &World) -> Vec<Row> {
    let a = json!({ "id": w.a, "userId": "alice", "status": "CONFIRMED", "version": 2 });
    let a_lines = json!({ "lines": [
        { "sku": "MUG", "quantity": 1, "item": { "sku": "MUG", "name": "Item MUG" } },
    ] });
    let a_history = json!({ "history": [
        { "orderId": w.a, "version": 1, "from": null, "to": "PENDING", "outcome": "APPLIED",
          "requestedStatus": null, "changedBy": { "userId": "alice", "role": "CUSTOMER" },
          "order": { "id": w.a, "userId": "alice" } },
        { "orderId": w.a, "version": 2, "from": "PENDING", "to": "CONFIRMED", "outcome": "APPLIED",
          "requestedStatus": null, "changedBy": null, "order": { "id": w.a, "userId": "alice" } },
    ] });
    // A page of orders, newest first: edges and nodes with their private fields (cursors are
    // opaque: tests/api/order_listing.rs pages with them).
    let listed = |orders: &[(&String, &str)]| {
        let edges: Vec<Value> = orders
            .iter()
            .map(|(id, user)| {
                json!({ "node": {
                    "id": id, "userId": user, "lines": [{ "sku": "MUG" }],
                    "history": [
                        { "orderId": id, "to": "PENDING" },
                        { "orderId": id, "to": "CONFIRMED" },
                    ],
                } })
            })
            .collect();
        let nodes: Vec<Value> = orders.iter().map(|(id, _)| json!({ "id": id })).collect();
        json!({
            "edges": edges,
            "nodes": nodes,
            "pageInfo": { "hasNextPage": false, "hasPreviousPage": false },
        })
    };
    let alices_orders = listed(&[(&w.a2, "alice"), (&w.a, "alice")]);
    let bobs_orders = listed(&[(&w.b, "bob")]);
    let all_orders = listed(&[
        (&w.s, "staff-1"),
        (&w.b, "bob"),
        (&w.a2, "alice"),
        (&w.a, "alice"),
    ]);
    let page_of = |user: &str, more: bool| {
        json!({
            "nodes": [{ "userId": user }],
            "pageInfo": { "hasNextPage": more },
        })
    };
    let ids = |ids: &[&String]| {
        let nodes: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
        json!({ "nodes": nodes })
    };
    let mug = json!({ "sku": "MUG", "name": "Item MUG", "quantity": 6 });
    let inventory = json!({ "edges": [{ "cursor": "MUG", "node": { "sku": "MUG" } }] });
    let placed = |id: &String, user: &str| {
        json!({
            "order": { "id": id, "userId": user },
            "userErrors": [],
        })
    };
    // updateOrderStatus payloads: the order shown (or null), accepted, the userError codes.
    let status_payload = |order: Option<&String>, accepted: bool, codes: &[&str]| {
        json!({
            "accepted": accepted,
            "order": order.map(|id| json!({ "id": id, "userId": "alice" })),
            "userErrors": codes.iter().map(|code| json!({ "code": code })).collect::<Vec<_>>(),
        })
    };
    let not_found = status_payload(None, false, &["ORDER_NOT_FOUND"]);
    let a_current = json!({
        "orderId": w.a, "from": "PENDING", "to": "CONFIRMED", "version": 2, "outcome": "APPLIED",
        "order": { "id": w.a, "userId": "alice", "status": "CONFIRMED" },
    });
    // A change staff made, as `user`'s order: only staff see which staff member made it.
    let moved = |id: &String, user: &str, seen_by_staff: bool| {
        let staff_member = if seen_by_staff {
            json!("staff-1")
        } else {
            Value::Null
        };
        let changed_by = json!({ "userId": staff_member, "role": "STAFF" });
        json!({ "orderId": id, "from": "CONFIRMED", "to": "RECEIVED", "outcome": "APPLIED",
                "changedBy": changed_by,
                "order": { "id": id, "userId": user, "lines": [{ "sku": "MUG" }], "history": [
                    { "to": "PENDING", "changedBy": { "userId": user } },
                    { "to": "CONFIRMED", "changedBy": null },
                    { "to": "RECEIVED", "changedBy": { "userId": staff_member } },
                ] } })
    };

    const STATUS_UPDATE: &str = "mutation($id: ID!, $status: OrderStatus!) {
        updateOrderStatus(input: { orderId: $id, status: $status }) {
            accepted order { id userId } userErrors { code message }
        }
    }";

    // Expected: [anonymous, owner (alice), other customer (bob), staff].
    vec![
        // Queries.
        row(
            "order(id) of alice's order",
            "query($id: ID!) { order(id: $id) { id userId status version } }",
            json!({ "id": w.a }),
            [UNAUTHENTICATED, data(&a), NULL, data(&a)],
        ),
        row(
            "order(id) of an order nobody has",
            "query($id: ID!) { order(id: $id) { id userId } }",
            json!({ "id": NOBODYS_ORDER }),
            [UNAUTHENTICATED, NULL, NULL, NULL],
        ),
        row(
            "order(id) with a malformed id",
            "query($id: ID!) { order(id: $id) { id } }",
            json!({ "id": "not-an-order-id" }),
            [
                UNAUTHENTICATED,
                BAD_USER_INPUT,
                BAD_USER_INPUT,
                BAD_USER_INPUT,
            ],
        ),
        row(
            "Order.lines and OrderLine.item of alice's order",
            "query($id: ID!) { order(id: $id) { lines { sku quantity item { sku name } } } }",
            json!({ "id": w.a }),
            [UNAUTHENTICATED, data(&a_lines), NULL, data(&a_lines)],
        ),
        row(
            "Order.history and OrderStatusChange.order of alice's order",
            "query($id: ID!) { order(id: $id) { history {
                orderId version from to outcome requestedStatus changedBy { userId role }
                order { id userId }
            } } }",
            json!({ "id": w.a }),
            [UNAUTHENTICATED, data(&a_history), NULL, data(&a_history)],
        ),
        row(
            "orders: edges, nodes and each order's lines and history",
            "{ orders {
                edges { node { id userId lines { sku } history { orderId to } } }
                nodes { id }
                pageInfo { hasNextPage hasPreviousPage }
            } }",
            json!({}),
            [
                UNAUTHENTICATED,
                data(&alices_orders),
                data(&bobs_orders),
                data(&all_orders),
            ],
        ),
        row(
            "orders after staff's (newest) order, its id as the cursor (as before opaque cursors)",
            "query($after: String) { orders(after: $after) { nodes { id } } }",
            json!({ "after": w.s }),
            [
                UNAUTHENTICATED,
                data(&ids(&[&w.a2, &w.a])),
                data(&ids(&[&w.b])),
                data(&ids(&[&w.b, &w.a2, &w.a])),
            ],
        ),
        row(
            "orders(status, first: 1): hasNextPage counts only visible orders",
            "{ orders(status: CONFIRMED, first: 1) { nodes { userId } pageInfo { hasNextPage } } }",
            json!({}),
            [
                UNAUTHENTICATED,
                data(&page_of("alice", true)),
                data(&page_of("bob", false)),
                data(&page_of("staff-1", true)),
            ],
        ),
        row(
            "inventoryItem",
            "{ inventoryItem(sku: \"MUG\") { sku name quantity } }",
            json!({}),
            [UNAUTHENTICATED, data(&mug), data(&mug), data(&mug)],
        ),
        row(
            "inventoryItems",
            "{ inventoryItems { edges { cursor node { sku } } } }",
            json!({}),
            [
                UNAUTHENTICATED,
                data(&inventory),
                data(&inventory),
                data(&inventory),
            ],
        ),
        // Mutations.
        row(
            "placeOrder retried with the idempotency key alice, bob and staff each used",
            "mutation($input: PlaceOrderInput!) {
                placeOrder(input: $input) { order { id userId } userErrors { code message } }
            }",
            json!({ "input": {
                "items": [{ "sku": "MUG", "quantity": 1 }],
                "idempotencyKey": KEY,
            } }),
            [
                UNAUTHENTICATED,
                data(&placed(&w.a, "alice")),
                data(&placed(&w.b, "bob")),
                data(&placed(&w.s, "staff-1")),
            ],
        ),
        row(
            "updateOrderStatus: alice's order to CONFIRMED (what it already is)",
            STATUS_UPDATE,
            json!({ "id": w.a, "status": "CONFIRMED" }),
            [
                UNAUTHENTICATED,
                data(&status_payload(Some(&w.a), false, &["NOT_PERMITTED"])),
                data(&not_found),
                data(&status_payload(Some(&w.a), true, &[])),
            ],
        ),
        row(
            "updateOrderStatus: alice's order to DELIVERED",
            STATUS_UPDATE,
            json!({ "id": w.a, "status": "DELIVERED" }),
            [
                UNAUTHENTICATED,
                data(&status_payload(Some(&w.a), false, &["NOT_PERMITTED"])),
                data(&not_found),
                data(&status_payload(Some(&w.a), false, &["INVALID_TRANSITION"])),
            ],
        ),
        row(
            "updateOrderStatus: an order nobody has",
            STATUS_UPDATE,
            json!({ "id": NOBODYS_ORDER, "status": "CANCELLED" }),
            [
                UNAUTHENTICATED,
                data(&not_found),
                data(&not_found),
                data(&not_found),
            ],
        ),
        row(
            "updateOrderStatus: cancel alice's second order",
            STATUS_UPDATE,
            json!({ "id": w.a2, "status": "CANCELLED" }),
            [
                UNAUTHENTICATED,
                data(&status_payload(Some(&w.a2), true, &[])),
                data(&not_found),
                data(&status_payload(Some(&w.a2), true, &[])),
            ],
        ),
        row(
            "upsertInventoryItem",
            "mutation {
                upsertInventoryItem(input: { sku: \"DESK\", name: \"Desk\", quantity: 3 }) {
                    item { sku name quantity } userErrors { code message }
                }
            }",
            json!({}),
            [
                UNAUTHENTICATED,
                FORBIDDEN,
                FORBIDDEN,
                data(&json!({
                    "item": { "sku": "DESK", "name": "Desk", "quantity": 3 },
                    "userErrors": [],
                })),
            ],
        ),
        // Subscriptions (WebSocket only): each viewer's first message.
        row(
            "orderStatusChanged(orderId) of alice's order: its current state and the order",
            "subscription($id: ID!) { orderStatusChanged(orderId: $id) {
                orderId from to version outcome order { id userId status }
            } }",
            json!({ "id": w.a }),
            [
                UNAUTHENTICATED,
                data(&a_current),
                NOT_FOUND,
                data(&a_current),
            ],
        ),
        row(
            "orderStatusChanged(orderId) of alice's order after a version it does not have",
            "subscription($id: ID!) { orderStatusChanged(orderId: $id, afterVersion: 99) { to } }",
            json!({ "id": w.a }),
            [UNAUTHENTICATED, BAD_USER_INPUT, NOT_FOUND, BAD_USER_INPUT],
        ),
        row(
            "orderStatusChanged(orderId) of an order nobody has",
            "subscription($id: ID!) { orderStatusChanged(orderId: $id) { to } }",
            json!({ "id": NOBODYS_ORDER }),
            [UNAUTHENTICATED, NOT_FOUND, NOT_FOUND, NOT_FOUND],
        ),
        row(
            "orderStatusChanged without orderId, while alice's then bob's order move",
            "subscription { orderStatusChanged {
                orderId from to outcome changedBy { userId role }
                order { id userId lines { sku } history { to changedBy { userId } } }
            } }",
            json!({}),
            [
                UNAUTHENTICATED,
                data(&moved(&w.a2, "alice", false)),
                data(&moved(&w.b, "bob", false)),
                data(&moved(&w.a2, "alice", true)),
            ],
        )
        .with_changes_after_subscribing(),
        row(
            "inventoryChanged of a SKU nobody stocks",
            "subscription { inventoryChanged(sku: \"NO-SUCH-SKU\") { sku quantity } }",
            json!({}),
            [UNAUTHENTICATED, FORBIDDEN, FORBIDDEN, NOT_FOUND],
        ),
    ]
}

/// Words that show how oms is built; no message may contain one.
const INTERNALS: &[&str] = &[
    "sqlx",
    "postgres",
    "sql",
    "select ",
    "insert into",
    "relation",
    "constraint",
    "duplicate key",
    "panicked",
    "panic",
    "backtrace",
    "src/",
    ".rs:",
    "thread '",
    "tokio",
    "rdkafka",
    "kafka",
    "async_graphql",
];

/// Every outcome that differs from the matrix, and every leak, over a whole run.
#[derive(Default)]
struct Report {
    judged: usize,
    messages_scanned: usize,
    mismatches: Vec<String>,
    leaks: Vec<String>,
}

impl Report {
    /// Judges one answer (`{"data", "errors"}`) of `viewer` to `row`; `http_status` for HTTP.
    fn check(
        &mut self,
        world: &World,
        row: &Row,
        viewer: Viewer,
        transport: &str,
        http_status: Option<u16>,
        mut answer: Value,
    ) {
        self.judged += 1;
        let case = format!("{} | {viewer:?} | {transport}", row.operation);
        if let Some(status) = http_status.filter(|status| *status != 200) {
            self.mismatches
                .push(format!("{case}: HTTP {status}, not 200: {answer}"));
        }

        let errors = answer["errors"].as_array().cloned().unwrap_or_default();
        let mut messages: Vec<String> = errors.iter().map(Value::to_string).collect();
        if let Some(data) = answer.get_mut("data") {
            take_user_error_messages(data, &mut messages);
        }
        for message in &messages {
            self.messages_scanned += 1;
            for leak in leaks_in(world, viewer, &row.variables, message) {
                self.leaks.push(format!("{case}: {leak}"));
            }
        }

        let expected = &row.expected[viewer as usize];
        let value = &answer["data"][row.field()];
        let as_expected = match expected {
            Expect::Data(wanted) => errors.is_empty() && value == wanted,
            Expect::Error(code) => {
                !errors.is_empty()
                    && errors.iter().all(|e| e["extensions"]["code"] == *code)
                    && value.is_null()
            }
        };
        if !as_expected {
            self.mismatches.push(format!(
                "{case}:\n    expected {expected:?}\n    got {answer}"
            ));
        }
    }

    fn assert_clean(&self, judged: usize) {
        assert_eq!(self.judged, judged, "every cell of the matrix was judged");
        assert!(
            self.mismatches.is_empty(),
            "{} of {} answers differ from the matrix:\n{}",
            self.mismatches.len(),
            self.judged,
            self.mismatches.join("\n")
        );
        assert!(
            self.leaks.is_empty(),
            "{} of {} error messages leak:\n{}",
            self.leaks.len(),
            self.messages_scanned,
            self.leaks.join("\n")
        );
    }
}

/// Moves every userError's `message` out of `value` into `messages` (codes stay to be compared).
fn take_user_error_messages(value: &mut Value, messages: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(user_errors)) = map.get_mut("userErrors") {
                for error in user_errors.iter_mut().filter_map(Value::as_object_mut) {
                    if let Some(Value::String(message)) = error.remove("message") {
                        messages.push(message);
                    }
                }
            }
            for nested in map.values_mut() {
                take_user_error_messages(nested, messages);
            }
        }
        Value::Array(items) => {
            for item in items {
                take_user_error_messages(item, messages);
            }
        }
        _ => {}
    }
}

/// What `viewer` should not read in `message`: internals, the signing secret, or another user's
/// id or order id, unless the request itself named it (`variables`).
fn leaks_in(world: &World, viewer: Viewer, variables: &Value, message: &str) -> Vec<String> {
    let lower = message.to_lowercase();
    let sent = variables.to_string();
    let internals = INTERNALS
        .iter()
        .filter(|word| lower.contains(*word))
        .map(|word| format!("shows internals ({word:?}): {message}"));
    let secret = message
        .contains(SECRET)
        .then(|| format!("shows the signing secret: {message}"));
    let private = world
        .private_to_others(viewer)
        .into_iter()
        .filter(|private| message.contains(private) && !sent.contains(private))
        .map(|private| format!("shows {private:?}, which is not theirs: {message}"));
    internals.chain(secret).chain(private).collect()
}

/// Runs a query or mutation on an open WebSocket; returns its `{"data", "errors"}`.
async fn over_websocket(socket: &mut Subscription, row: &Row) -> Value {
    socket.start(row.document, row.variables.clone()).await;
    let message = socket.next_message().await.expect("the socket stays open");
    match message["type"].as_str() {
        Some("next") => {
            let done = socket.next_message().await.expect("the socket stays open");
            assert_eq!(done["type"], "complete", "{done}");
            message["payload"].clone()
        }
        Some("error") => json!({ "errors": message["payload"] }),
        _ => panic!("unexpected message {message}"),
    }
}

/// Waits until the outbox is empty and then the orders consumer has committed its whole topic:
/// every status request that was queued has been published, then applied (or refused).
async fn wait_until_every_status_request_is_applied(app: &TestApp) {
    let suffix = &app.deployment.suffix;
    wait_until_outbox_empty(app).await;
    wait_until_caught_up(&format!("oms-{suffix}-orders"), &format!("orders-{suffix}")).await;
}

#[tokio::test]
async fn every_query_and_mutation_answers_each_viewer_as_the_matrix_says_over_http_and_websocket() {
    let app = TestApp::spawn().await;
    let world = World::create(&app).await;
    let mut sockets = Vec::new();
    for viewer in VIEWERS {
        sockets.push(world.connect(&app, viewer).await);
    }
    let rows: Vec<Row> = matrix(&world)
        .into_iter()
        .filter(|row| !row.is_subscription())
        .collect();

    let mut report = Report::default();
    for row in &rows {
        for viewer in VIEWERS {
            let (status, body) = app
                .post(world.token(viewer), row.document, row.variables.clone())
                .await;
            report.check(&world, row, viewer, "HTTP", Some(status), body);
            let answer = over_websocket(&mut sockets[viewer as usize], row).await;
            report.check(&world, row, viewer, "WebSocket", None, answer);
        }
    }
    report.assert_clean(rows.len() * VIEWERS.len() * 2);

    // What the matrix accepted took effect, and nothing it refused did: alice's second order is
    // cancelled (its mug back in stock), the other orders are untouched, no order was added.
    app.wait_for_status(&world.alice, &world.a2, "CANCELLED")
        .await;
    wait_until_every_status_request_is_applied(&app).await;
    let state = app
        .query(
            &world.staff,
            "{ orders { nodes { id status version } } inventoryItem(sku: \"MUG\") { quantity } }",
            json!({}),
        )
        .await;
    let order = |id: &String, status: &str, version: i32| {
        json!({
            "id": id, "status": status, "version": version,
        })
    };
    assert_eq!(
        state,
        json!({
            "orders": { "nodes": [
                order(&world.s, "CONFIRMED", 2),
                order(&world.b, "CONFIRMED", 2),
                order(&world.a2, "CANCELLED", 3),
                order(&world.a, "CONFIRMED", 2),
            ] },
            "inventoryItem": { "quantity": 7 },
        })
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn every_subscription_answers_each_viewer_as_the_matrix_says() {
    let app = TestApp::spawn().await;
    let world = World::create(&app).await;
    let rows: Vec<Row> = matrix(&world)
        .into_iter()
        .filter(Row::is_subscription)
        .collect();

    let mut report = Report::default();
    for row in &rows {
        let mut subscriptions = Vec::new();
        for viewer in VIEWERS {
            let mut subscription = world.connect(&app, viewer).await;
            subscription
                .start(row.document, row.variables.clone())
                .await;
            subscriptions.push(subscription);
        }
        if row.changes_after_subscribing {
            // Every subscription the row answers with data is registered with the live feed (and
            // the rows before have let go of theirs), so no change can pass one by.
            wait_for_live_subscriptions(app.addr, row.live_subscriptions()).await;
            world.move_a2_then_b(&app).await;
        }
        for (viewer, subscription) in VIEWERS.into_iter().zip(&mut subscriptions) {
            let answer = subscription.next_payload().await;
            report.check(&world, row, viewer, "WebSocket", None, answer);
        }
    }
    report.assert_clean(rows.len() * VIEWERS.len());
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn another_customers_order_is_answered_exactly_like_an_order_that_does_not_exist() {
    let app = TestApp::spawn().await;
    app.stock("MUG", 5).await;
    let alices = app
        .place_order_id(&app.customer("alice"), &[("MUG", 1)])
        .await;
    let missing = uuid::Uuid::now_v7().to_string();
    let bob = app.customer("bob");

    // bob's whole answer, with the order id he sent blanked out.
    let answer = |document: &'static str, id: String| {
        let (app, bob) = (&app, &bob);
        async move {
            let variables = json!({ "id": id });
            let answer = if document.starts_with("subscription") {
                let mut subscription = Subscription::connect(app, bob, Protocol::TransportWs).await;
                subscription.start(document, variables).await;
                subscription.next_payload().await.to_string()
            } else {
                let (status, body) = app.post(Some(bob), document, variables).await;
                format!("HTTP {status} {body}")
            };
            answer.replace(&id, "<id>")
        }
    };
    for document in [
        "query($id: ID!) { order(id: $id) { id userId status history { to } } }",
        "mutation($id: ID!) { updateOrderStatus(input: { orderId: $id, status: CANCELLED }) {
            accepted order { id } userErrors { field code message } } }",
        "mutation($id: ID!) {
            updateOrderStatus(input: { orderId: $id, status: DELIVERED, reason: \"because\" }) {
                accepted order { id } userErrors { field code message } } }",
        "subscription($id: ID!) { orderStatusChanged(orderId: $id) { to order { userId } } }",
        "subscription($id: ID!) { orderStatusChanged(orderId: $id, afterVersion: 99) { to } }",
    ] {
        let on_alices = answer(document, alices.clone()).await;
        let on_missing = answer(document, missing.clone()).await;
        assert_eq!(on_alices, on_missing, "{document}");
        let lower = on_alices.to_lowercase();
        assert!(!on_alices.contains("alice"), "{on_alices}");
        assert!(
            !INTERNALS.iter().any(|word| lower.contains(word)),
            "{on_alices}"
        );
    }
    app.stop_and_drop_database().await;
}
