//! Customers: a profile taken from the token's standard claims when a customer acts, kept
//! current when those claims change, edited by the customer or by staff under the old system's
//! rules, found by staff, and never shown to another customer or written to logs or events.

use crate::helpers::{read_topic, spawn_logged_oms_process, TestApp};
use oms::auth::Role;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

const PROFILE: &str = "id name email phone";

const MY_PROFILE: &str = "query { viewer { profile { id name email phone } } }";

const UPDATE_MINE: &str = "mutation($input: UpdateMyProfileInput!) {
    updateMyProfile(input: $input) {
        customer { id name email phone } userErrors { field code message } } }";

const UPDATE_CUSTOMER: &str = "mutation($input: UpdateCustomerInput!) {
    updateCustomer(input: $input) {
        customer { id name email phone } userErrors { field code message } } }";

const CUSTOMER: &str = "query($id: ID!) { customer(id: $id) { id name email phone } }";

fn ada(app: &TestApp) -> String {
    app.token_with_claims(
        "ada",
        Role::Customer,
        &[
            ("name", "Ada Lovelace"),
            ("email", "ada@example.com"),
            ("phone_number", "+1 555 010 0199"),
        ],
    )
}

async fn customer(app: &TestApp, id: &str) -> Value {
    app.query(&app.staff(), CUSTOMER, json!({"id": id})).await["customer"].clone()
}

async fn update_mine(app: &TestApp, token: &str, input: Value) -> Value {
    app.query(token, UPDATE_MINE, json!({"input": input})).await["updateMyProfile"].clone()
}

#[tokio::test]
async fn a_customer_who_places_an_order_is_known_by_the_profile_their_token_claims() {
    let app = TestApp::spawn().await;
    app.stock("LAMP", 5).await;
    let order = app.place_order_id(&ada(&app), &[("LAMP", 1)]).await;

    let expected = json!({"id": "ada", "name": "Ada Lovelace", "email": "ada@example.com",
                          "phone": "5550100199"});
    assert_eq!(customer(&app, "ada").await, expected);
    let seen = app
        .query(
            &app.staff(),
            &format!("query($id: ID!) {{ order(id: $id) {{ userId customer {{ {PROFILE} }} }} }}"),
            json!({"id": order}),
        )
        .await;
    assert_eq!(seen["order"]["customer"], expected);
    assert_eq!(seen["order"]["userId"], "ada");

    // A customer whose token has no profile claims is known by id alone.
    let bob = app.customer("bob");
    app.place_order_id(&bob, &[("LAMP", 1)]).await;
    assert_eq!(
        customer(&app, "bob").await,
        json!({"id": "bob", "name": null, "email": null, "phone": null})
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_customers_own_edits_stay_until_their_identity_providers_claims_change() {
    let app = TestApp::spawn().await;
    let token = ada(&app);
    let seen = app.query(&token, MY_PROFILE, json!({})).await;
    assert_eq!(seen["viewer"]["profile"]["email"], "ada@example.com");

    let changed = update_mine(
        &app,
        &token,
        json!({"email": "countess@example.org", "phone": null}),
    )
    .await;
    assert_eq!(changed["userErrors"], json!([]));
    assert_eq!(
        changed["customer"],
        json!({"id": "ada", "name": "Ada Lovelace", "email": "countess@example.org", "phone": null})
    );

    // Acting again with the same token keeps the edit: those claims were taken already.
    app.stock("LAMP", 5).await;
    app.place_order_id(&token, &[("LAMP", 1)]).await;
    let seen = app.query(&token, MY_PROFILE, json!({})).await;
    assert_eq!(seen["viewer"]["profile"]["email"], "countess@example.org");
    // So does acting through another instance, which has not seen this token before.
    let other = TestApp::spawn_in(app.deployment.clone(), &[]).await;
    let seen = other.query(&token, MY_PROFILE, json!({})).await;
    assert_eq!(seen["viewer"]["profile"]["email"], "countess@example.org");
    other.stop().await;

    // A token whose claims changed at the identity provider brings the new email in.
    let renamed = app.token_with_claims(
        "ada",
        Role::Customer,
        &[("name", "Ada King"), ("email", "ada.king@example.com")],
    );
    let seen = app.query(&renamed, MY_PROFILE, json!({})).await;
    assert_eq!(
        seen["viewer"]["profile"],
        json!({"id": "ada", "name": "Ada King", "email": "ada.king@example.com", "phone": null})
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_profile_with_a_malformed_name_email_or_phone_is_refused_field_by_field() {
    let app = TestApp::spawn().await;
    let token = ada(&app);
    let refused = update_mine(
        &app,
        &token,
        json!({"name": "  ", "email": "ada@example", "phone": "555-0100"}),
    )
    .await;
    assert_eq!(refused["customer"], json!(null));
    let codes: Vec<(Value, Value)> = refused["userErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| (error["field"].clone(), error["code"].clone()))
        .collect();
    assert_eq!(
        codes,
        [
            (json!(["name"]), json!("INVALID_NAME")),
            (json!(["email"]), json!("INVALID_EMAIL")),
            (json!(["phone"]), json!("INVALID_PHONE")),
        ]
    );
    assert!(
        refused["userErrors"][2]["message"]
            .as_str()
            .unwrap()
            .contains("10 digits"),
        "{refused}"
    );
    // Nothing changed.
    assert_eq!(customer(&app, "ada").await["phone"], "5550100199");

    // Separators are allowed and dropped.
    let changed = update_mine(&app, &token, json!({"phone": "(555) 010-0123"})).await;
    assert_eq!(changed["customer"]["phone"], "5550100123");
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn no_two_customers_share_an_email_whatever_its_case_or_a_phone() {
    let app = TestApp::spawn().await;
    let ada = ada(&app);
    app.query(&ada, MY_PROFILE, json!({})).await;
    let bob = app.customer("bob");

    let refused = update_mine(&app, &bob, json!({"email": "ADA@Example.com"})).await;
    assert_eq!(
        refused["userErrors"],
        json!([{"field": ["email"], "code": "EMAIL_TAKEN",
                "message": "another customer has this email address"}])
    );
    let refused = update_mine(&app, &bob, json!({"phone": "555 010 0199"})).await;
    assert_eq!(refused["userErrors"][0]["code"], "PHONE_TAKEN");
    let refused = app
        .query(
            &app.staff(),
            UPDATE_CUSTOMER,
            json!({"input": {"id": "ada", "phone": "5550100100"}}),
        )
        .await;
    assert_eq!(refused["updateCustomer"]["userErrors"], json!([]));
    let taken = app
        .query(
            &app.staff(),
            UPDATE_CUSTOMER,
            json!({"input": {"id": "bob", "phone": "5550100100"}}),
        )
        .await;
    // bob has no profile yet: staff can only change customers oms knows.
    assert_eq!(
        taken["updateCustomer"]["userErrors"][0]["code"],
        "CUSTOMER_NOT_FOUND"
    );

    // A token that claims another customer's email still acts; its profile leaves it out.
    let impostor = app.token_with_claims(
        "eve",
        Role::Customer,
        &[("name", "Eve"), ("email", "ada@example.com")],
    );
    app.stock("LAMP", 5).await;
    app.place_order_id(&impostor, &[("LAMP", 1)]).await;
    assert_eq!(
        customer(&app, "eve").await,
        json!({"id": "eve", "name": "Eve", "email": null, "phone": null})
    );
    assert_eq!(customer(&app, "ada").await["email"], "ada@example.com");
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn staff_find_customers_by_name_email_or_phone_prefix_a_page_at_a_time() {
    let app = TestApp::spawn().await;
    for (id, name, email, phone) in [
        ("c1", "Ada Lovelace", "ada@example.com", "5550100001"),
        ("c2", "Adam Smith", "adam@example.net", "5550200002"),
        ("c3", "Grace Hopper", "grace@navy.example", "5550100003"),
        ("c4", "100% Cotton", "cotton@example.com", "6660100004"),
    ] {
        let token = app.token_with_claims(
            id,
            Role::Customer,
            &[("name", name), ("email", email), ("phone_number", phone)],
        );
        app.query(&token, MY_PROFILE, json!({})).await;
    }
    let search = |filter: Value, first: i64, after: Value| {
        let app = &app;
        async move {
            let found = app
                .query(
                    &app.staff(),
                    "query($filter: CustomerFilter, $first: Int, $after: String) {
                        customers(filter: $filter, first: $first, after: $after) {
                            edges { cursor node { id } } pageInfo { hasNextPage } } }",
                    json!({"filter": filter, "first": first, "after": after}),
                )
                .await;
            let ids: Vec<String> = found["customers"]["edges"]
                .as_array()
                .unwrap_or_else(|| panic!("{found}"))
                .iter()
                .map(|edge| edge["node"]["id"].as_str().unwrap().to_owned())
                .collect();
            (ids, found["customers"].clone())
        }
    };
    assert_eq!(
        search(json!({"search": "ADA"}), 10, json!(null)).await.0,
        ["c1", "c2"]
    );
    assert_eq!(
        search(json!({"search": "grace@"}), 10, json!(null)).await.0,
        ["c3"]
    );
    assert_eq!(
        search(json!({"search": "555 010"}), 10, json!(null))
            .await
            .0,
        ["c1", "c3"]
    );
    // LIKE's wildcards are plain characters in a search.
    assert_eq!(
        search(json!({"search": "100%"}), 10, json!(null)).await.0,
        ["c4"]
    );

    // An unknown customer is simply not there.
    assert_eq!(customer(&app, "nobody").await, json!(null));

    let (first_page, connection) = search(json!({}), 2, json!(null)).await;
    assert_eq!(first_page, ["c1", "c2"]);
    assert_eq!(connection["pageInfo"]["hasNextPage"], true);
    let cursor = connection["edges"][1]["cursor"].clone();
    let (second_page, connection) = search(json!({}), 2, cursor).await;
    assert_eq!(second_page, ["c3", "c4"]);
    assert_eq!(connection["pageInfo"]["hasNextPage"], false);

    let (status, body) = app
        .post(
            Some(&app.staff()),
            "{ customers(filter: {search: \"   \"}) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_customer_never_sees_or_changes_another_customers_profile() {
    let app = TestApp::spawn().await;
    let ada = ada(&app);
    app.query(&ada, MY_PROFILE, json!({})).await;
    let bob = app.token_with_claims("bob", Role::Customer, &[("name", "Bob")]);
    app.query(&bob, MY_PROFILE, json!({})).await;

    for (query, variables) in [
        (CUSTOMER, json!({"id": "ada"})),
        ("{ customers { edges { node { id } } } }", json!({})),
        (
            UPDATE_CUSTOMER,
            json!({"input": {"id": "ada", "name": "Not Ada"}}),
        ),
    ] {
        let (_, body) = app.post(Some(&bob), query, variables).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{body}"
        );
        assert!(!body.to_string().contains("Lovelace"), "{body}");
    }
    // Their own profile, by id or under viewer, and on their own orders.
    let own = app.query(&bob, CUSTOMER, json!({"id": "bob"})).await;
    assert_eq!(own["customer"]["name"], "Bob");
    app.stock("LAMP", 5).await;
    let order = app.place_order_id(&bob, &[("LAMP", 1)]).await;
    let seen = app
        .query(
            &bob,
            "query($id: ID!) { order(id: $id) { customer { name } } }",
            json!({"id": order}),
        )
        .await;
    assert_eq!(seen["order"]["customer"]["name"], "Bob");
    assert_eq!(customer(&app, "ada").await["name"], "Ada Lovelace");
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_customers_orders_are_the_list_orders_gives_for_that_customer() {
    let app = TestApp::spawn().await;
    app.stock("LAMP", 50).await;
    let ada = ada(&app);
    for _ in 0..3 {
        app.place_order_id(&ada, &[("LAMP", 1)]).await;
    }
    app.place_order_id(&app.customer("bob"), &[("LAMP", 1)])
        .await;
    let staff = app.staff();
    let through_customer = app
        .query(
            &staff,
            "{ customer(id: \"ada\") { orders(first: 2) { totalCount edges { node { id } } }
                 orderCounts { status count } } }",
            json!({}),
        )
        .await;
    let through_orders = app
        .query(
            &staff,
            "{ orders(filter: {userId: \"ada\"}, first: 2) { totalCount edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        through_customer["customer"]["orders"],
        through_orders["orders"]
    );
    assert_eq!(through_customer["customer"]["orders"]["totalCount"], 3);
    let counted: i64 = through_customer["customer"]["orderCounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|count| count["count"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, 3);

    // Their own list, reached through their profile.
    let own = app
        .query(
            &ada,
            "{ viewer { profile { orders { totalCount } } } }",
            json!({}),
        )
        .await;
    assert_eq!(own["viewer"]["profile"]["orders"]["totalCount"], 3);
    let (_, body) = app
        .post(
            Some(&staff),
            "{ customer(id: \"ada\") { orders(filter: {userId: \"bob\"}) { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn personal_data_reaches_neither_the_log_nor_any_event() {
    let app = TestApp::spawn().await;
    // A second instance of the same deployment, logging everything oms says at debug level.
    let addr = format!("127.0.0.1:{}", crate::helpers::free_port());
    let mut process = spawn_logged_oms_process(
        &app.deployment,
        &[&format!("--listen-addr={addr}")],
        "info,oms=debug",
    );
    let log = tokio::io::BufReader::new(process.stderr.take().unwrap());
    let lines = tokio::spawn(async move {
        let mut lines = log.lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push(line);
        }
        all
    });
    let logged = TestApp::attach(addr.parse().unwrap(), app.deployment.clone()).await;
    crate::helpers::wait_until_ready(logged.addr).await;

    app.stock("LAMP", 5).await;
    let ada = ada(&logged);
    let order = logged.place_order_id(&ada, &[("LAMP", 1)]).await;
    logged.wait_for_status(&ada, &order, "CONFIRMED").await;
    update_mine(
        &logged,
        &ada,
        json!({"name": "Augusta Ada King", "phone": "5550100177"}),
    )
    .await;
    // A claimed email that is taken is warned about, by user id.
    let eve = logged.token_with_claims("eve", Role::Customer, &[("email", "ada@example.com")]);
    logged.query(&eve, MY_PROFILE, json!({})).await;
    logged.update_status(&ada, &order, "CANCELLED").await;
    logged.wait_for_status(&ada, &order, "CANCELLED").await;

    crate::helpers::signal(process.id().unwrap(), "TERM");
    process.wait().await.unwrap();
    let lines = lines.await.unwrap();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("customer profile changed")),
        "the log has the profile change, by id"
    );
    assert!(lines
        .iter()
        .any(|line| line.contains("email claim is another customer's")));
    let personal = [
        "Lovelace",
        "Augusta",
        "ada@example.com",
        "5550100199",
        "5550100177",
        "555 010",
    ];
    for line in &lines {
        for data in personal {
            assert!(!line.contains(data), "the log shows {data:?}: {line}");
        }
    }
    let s = &app.deployment.suffix;
    for topic in ["inventory", "orders", "order-status", "stock-levels"] {
        for message in read_topic(&format!("{topic}-{s}")).await {
            let payload = String::from_utf8_lossy(&message.payload);
            for data in personal {
                assert!(
                    !payload.contains(data),
                    "{topic} carries {data:?}: {payload}"
                );
            }
        }
    }
    app.stop_and_drop_database().await;
}
