//! Listing and counting orders: filters, both sort orders, paging forward and backward with
//! opaque cursors, totalCount, orderCounts and viewer, each checked against what was placed,
//! and who may see what.

use crate::helpers::TestApp;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const ORDERS: &str = "query($filter: OrderFilter, $orderBy: OrderOrder, $first: Int,
                             $after: String, $last: Int, $before: String) {
    orders(filter: $filter, orderBy: $orderBy, first: $first, after: $after, last: $last,
           before: $before) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { id status userId } }
    }
  }";

fn ids_of(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["id"].as_str().unwrap().to_owned())
        .collect()
}

fn owned(ids: &[&String]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

/// The orders of a test: who placed them and what became of them.
struct Placed {
    /// alice's: RED (confirmed), BLUE (confirmed, then cancelled), RED (confirmed)
    alice: Vec<String>,
    /// bob's: BLUE (confirmed), GOLD (rejected: none in stock), RED and BLUE (confirmed)
    bob: Vec<String>,
}

async fn place_orders(app: &TestApp) -> Placed {
    app.stock("RED", 100).await;
    app.stock("BLUE", 100).await;
    app.stock("GOLD", 0).await;
    let (alice, bob) = (app.customer("alice"), app.customer("bob"));
    let mut placed = Placed {
        alice: Vec::new(),
        bob: Vec::new(),
    };
    for (is_alice, lines, ends) in [
        (true, vec![("RED", 1)], "CONFIRMED"),
        (false, vec![("BLUE", 1)], "CONFIRMED"),
        (true, vec![("BLUE", 2)], "CONFIRMED"),
        (false, vec![("GOLD", 1)], "REJECTED"),
        (true, vec![("RED", 3)], "CONFIRMED"),
        (false, vec![("RED", 1), ("BLUE", 1)], "CONFIRMED"),
    ] {
        let (token, into) = if is_alice {
            (&alice, &mut placed.alice)
        } else {
            (&bob, &mut placed.bob)
        };
        let id = app.place_order_id(token, &lines).await;
        app.wait_for_status(token, &id, ends).await;
        into.push(id);
    }
    let cancelled = app
        .update_status(&alice, &placed.alice[1], "CANCELLED")
        .await;
    assert_eq!(cancelled["accepted"], true, "{cancelled}");
    app.wait_for_status(&alice, &placed.alice[1], "CANCELLED")
        .await;
    placed
}

async fn list(app: &TestApp, token: &str, variables: Value) -> Value {
    app.query(token, ORDERS, variables).await["orders"].clone()
}

#[tokio::test]
async fn staff_filter_orders_by_status_customer_sku_and_time_and_sort_by_either_time() {
    let app = TestApp::spawn().await;
    let placed = place_orders(&app).await;
    let staff = app.staff();
    let (a, b) = (&placed.alice, &placed.bob);

    let newest_first = list(&app, &staff, json!({})).await;
    assert_eq!(
        ids_of(&newest_first),
        owned(&[&b[2], &a[2], &b[1], &a[1], &b[0], &a[0]]),
        "newest first by default"
    );
    assert_eq!(newest_first["totalCount"], 6);

    let by_status = list(
        &app,
        &staff,
        json!({"filter": {"statuses": ["REJECTED", "CANCELLED"]}}),
    )
    .await;
    assert_eq!(ids_of(&by_status), owned(&[&b[1], &a[1]]));
    assert_eq!(by_status["totalCount"], 2);

    let bobs = list(&app, &staff, json!({"filter": {"userId": "bob"}})).await;
    assert_eq!(ids_of(&bobs), owned(&[&b[2], &b[1], &b[0]]));

    let with_blue = list(&app, &staff, json!({"filter": {"sku": "BLUE"}})).await;
    assert_eq!(ids_of(&with_blue), owned(&[&b[2], &a[1], &b[0]]));

    let bobs_confirmed_with_red = list(
        &app,
        &staff,
        json!({"filter": {"userId": "bob", "sku": "RED", "statuses": ["CONFIRMED"]}}),
    )
    .await;
    assert_eq!(ids_of(&bobs_confirmed_with_red), owned(&[&b[2]]));

    // The time ranges: from the third order's creation (inclusive), before the sixth's.
    let created: Vec<String> =
        sqlx::query_scalar("select to_json(created_at)#>>'{}' from orders order by created_at, id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let in_range = list(
        &app,
        &staff,
        json!({"filter": {"createdFrom": created[2], "createdBefore": created[5]}}),
    )
    .await;
    assert_eq!(ids_of(&in_range), owned(&[&a[2], &b[1], &a[1]]));

    // The cancellation made alice's second order the last changed.
    let changed_last = list(
        &app,
        &staff,
        json!({"orderBy": {"field": "UPDATED_AT", "direction": "DESC"}, "first": 2}),
    )
    .await;
    assert_eq!(ids_of(&changed_last), owned(&[&a[1], &b[2]]));
    let updated: String =
        sqlx::query_scalar("select to_json(updated_at)#>>'{}' from orders where id = $1::uuid")
            .bind(&a[1])
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let changed_since = list(&app, &staff, json!({"filter": {"updatedFrom": updated}})).await;
    assert_eq!(ids_of(&changed_since), owned(&[&a[1]]));

    let oldest_first = list(
        &app,
        &staff,
        json!({"orderBy": {"field": "CREATED_AT", "direction": "ASC"}}),
    )
    .await;
    assert_eq!(
        ids_of(&oldest_first),
        owned(&[&a[0], &b[0], &a[1], &b[1], &a[2], &b[2]])
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn pages_forward_and_backward_cover_the_list_once_even_while_orders_arrive() {
    let app = TestApp::spawn().await;
    let placed = place_orders(&app).await;
    let staff = app.staff();
    let everything = ids_of(&list(&app, &staff, json!({})).await);

    // Forward, two at a time, with an order placed between pages: it is newer than the first
    // page, so it does not shift what the cursors point at.
    let mut forward = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = list(&app, &staff, json!({"first": 2, "after": after})).await;
        assert!(page["totalCount"].as_i64().unwrap() >= 6, "{page}");
        assert_eq!(page["pageInfo"]["hasPreviousPage"], after.is_some());
        forward.extend(ids_of(&page));
        pages += 1;
        if pages == 1 {
            app.place_order_id(&app.customer("carol"), &[("RED", 1)])
                .await;
        }
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(forward, everything, "each order once, in order");
    assert_eq!(pages, 3);

    // Backward from the end (the oldest), two at a time.
    let mut backward = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = list(&app, &staff, json!({"last": 2, "before": before})).await;
        assert_eq!(page["pageInfo"]["hasNextPage"], before.is_some());
        let mut ids = ids_of(&page);
        ids.extend(backward);
        backward = ids;
        if page["pageInfo"]["hasPreviousPage"] == false {
            break;
        }
        before = page["pageInfo"]["startCursor"].as_str().map(str::to_owned);
    }
    let mut newest_first = vec![backward[0].clone()];
    newest_first.extend(everything.iter().cloned());
    assert_eq!(backward, newest_first, "the new order, then the same list");

    // A cursor is opaque, and the order id a cursor used to be still works in the default list.
    let legacy = list(&app, &staff, json!({"first": 1, "after": placed.bob[2]})).await;
    assert_eq!(ids_of(&legacy), vec![placed.alice[2].clone()]);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn bad_page_arguments_and_cursors_get_clear_errors() {
    let app = TestApp::spawn().await;
    let staff = app.staff();
    app.stock("RED", 10).await;
    app.place_order_id(&app.customer("alice"), &[("RED", 1)])
        .await;
    let created_cursor = list(&app, &staff, json!({})).await["edges"][0]["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for (variables, expected) in [
        (json!({"first": 1, "last": 1}), "not both"),
        (json!({"last": -1}), "last must be between 0 and"),
        (
            json!({"after": "nonsense"}),
            "after \"nonsense\" is not a cursor from this list",
        ),
        (
            json!({"after": created_cursor, "orderBy": {"field": "UPDATED_AT", "direction": "DESC"}}),
            "is not a cursor of a list in this order",
        ),
    ] {
        let (_, body) = app.post(Some(&staff), ORDERS, variables.clone()).await;
        let error = &body["errors"][0];
        assert_eq!(
            error["extensions"]["code"], "BAD_USER_INPUT",
            "{variables}: {body}"
        );
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(expected), "{variables}: {message}");
    }
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn customers_list_and_count_only_their_own_orders_and_viewer_says_who_they_are() {
    let app = TestApp::spawn().await;
    let placed = place_orders(&app).await;
    let alice = app.customer("alice");

    let alices = list(&app, &alice, json!({})).await;
    assert_eq!(
        set(&ids_of(&alices).iter().collect::<Vec<_>>()),
        set(&placed.alice.iter().collect::<Vec<_>>())
    );
    let with_blue = list(&app, &alice, json!({"filter": {"sku": "BLUE"}})).await;
    assert_eq!(
        ids_of(&with_blue),
        vec![placed.alice[1].clone()],
        "not bob's BLUE orders"
    );
    let (_, body) = app
        .post(Some(&alice), ORDERS, json!({"filter": {"userId": "bob"}}))
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );

    let counts = "query($filter: OrderFilter) { orderCounts(filter: $filter) { status count } }";
    let count_of = |counts: &Value, status: &str| -> i64 {
        counts["orderCounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["status"] == status)
            .unwrap()["count"]
            .as_i64()
            .unwrap()
    };
    let alices_counts = app.query(&alice, counts, json!({})).await;
    assert_eq!(
        alices_counts["orderCounts"].as_array().unwrap().len(),
        7,
        "every status"
    );
    assert_eq!(count_of(&alices_counts, "CONFIRMED"), 2);
    assert_eq!(count_of(&alices_counts, "CANCELLED"), 1);
    assert_eq!(
        count_of(&alices_counts, "REJECTED"),
        0,
        "bob's rejection is not hers"
    );
    let everyones = app.query(&app.staff(), counts, json!({})).await;
    assert_eq!(count_of(&everyones, "CONFIRMED"), 4);
    assert_eq!(count_of(&everyones, "REJECTED"), 1);
    let bobs_with_red = app
        .query(
            &app.staff(),
            counts,
            json!({"filter": {"userId": "bob", "sku": "RED"}}),
        )
        .await;
    assert_eq!(count_of(&bobs_with_red, "CONFIRMED"), 1);

    let viewer = app
        .query(
            &alice,
            "{ viewer { id role orders(first: 1) { totalCount edges { node { id } } }
                        orderCounts(filter: {statuses: [CANCELLED]}) { status count } } }",
            json!({}),
        )
        .await["viewer"]
        .clone();
    assert_eq!(viewer["id"], "alice");
    assert_eq!(viewer["role"], "CUSTOMER");
    assert_eq!(viewer["orders"]["totalCount"], 3);
    assert_eq!(viewer["orders"]["edges"][0]["node"]["id"], placed.alice[2]);
    assert_eq!(
        count_of(&json!({"orderCounts": viewer["orderCounts"]}), "CANCELLED"),
        1
    );
    // Staff's viewer lists staff's own orders: none here.
    let staffs = app
        .query(
            &app.staff(),
            "{ viewer { role orders { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(staffs["viewer"]["role"], "STAFF");
    assert_eq!(staffs["viewer"]["orders"]["totalCount"], 0);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn every_filter_and_sort_order_is_served_by_an_index() {
    use oms::db::order_listing::{explain_page, OrderFilter, PageRequest, SortTime, TimeRange};
    use oms::domain::status::OrderStatus;
    let deployment = crate::helpers::Deployment::new();
    let db = deployment.migrated_db().await;
    // 100,000 orders of 2,000 customers over 30 days, two lines each from 5,000 SKUs; most
    // delivered, 1% pending and 1% rejected, as in a shop that has run a while.
    for statement in [
        "insert into inventory_items (sku, name, quantity)
         select 'SKU-' || n, 'Item ' || n, 100 from generate_series(1, 5000) n",
        "insert into orders (id, user_id, status, version, created_at, updated_at)
         select gen_random_uuid(), 'user-' || (n % 2000),
                case when n % 100 = 0 then 'PENDING' when n % 100 = 1 then 'REJECTED'
                     when n % 10 = 2 then 'CANCELLED' else 'DELIVERED' end,
                1, now() - (n || ' seconds')::interval * 26,
                now() - (n || ' seconds')::interval * 13
           from generate_series(1, 100000) n",
        "insert into order_lines (order_id, line_no, sku, quantity)
         select id, line, 'SKU-' || (1 + abs(hashtext(id::text || line)) % 5000), 1
           from orders, generate_series(1, 2) line",
        "analyze",
    ] {
        sqlx::query(statement).execute(&db).await.unwrap();
    }
    let week_ago = chrono::Utc::now() - chrono::Duration::days(7);
    let newest = |sort| PageRequest {
        sort,
        descending: true,
        after: None,
        before: None,
        limit: 21,
        from_end: false,
    };
    let cases = [
        (
            "everyone's, newest first",
            OrderFilter::default(),
            newest(SortTime::Created),
            "orders_by_created",
        ),
        (
            "everyone's, last changed first",
            OrderFilter::default(),
            newest(SortTime::Updated),
            "orders_by_updated",
        ),
        (
            "one customer's",
            OrderFilter {
                user_id: Some("user-7".into()),
                ..Default::default()
            },
            newest(SortTime::Created),
            "orders_by_user_created",
        ),
        (
            "in one status",
            OrderFilter {
                statuses: Some(vec![OrderStatus::Pending]),
                ..Default::default()
            },
            newest(SortTime::Created),
            "orders_by_status_created",
        ),
        // Several statuses: PostgreSQL 15 reads the creation index newest first and skips the
        // other statuses, or gathers the statuses from their index and sorts, whichever costs
        // less for the statuses' share of orders.
        (
            "in two statuses",
            OrderFilter {
                statuses: Some(vec![OrderStatus::Pending, OrderStatus::Rejected]),
                ..Default::default()
            },
            newest(SortTime::Created),
            "Index",
        ),
        (
            "with a line of one SKU",
            OrderFilter {
                sku: Some("SKU-42".into()),
                ..Default::default()
            },
            newest(SortTime::Created),
            "order_lines_by_sku",
        ),
        (
            "placed in the last week, oldest first",
            OrderFilter {
                created: TimeRange {
                    from: Some(week_ago),
                    before: None,
                },
                ..Default::default()
            },
            PageRequest {
                descending: false,
                ..newest(SortTime::Created)
            },
            "orders_by_created",
        ),
        (
            "changed in the last week",
            OrderFilter {
                updated: TimeRange {
                    from: Some(week_ago),
                    before: None,
                },
                ..Default::default()
            },
            newest(SortTime::Updated),
            "orders_by_updated",
        ),
    ];
    for (case, filter, page, index) in cases {
        let plan = explain_page(&db, &filter, &page).await.unwrap().join("\n");
        assert!(plan.contains(index), "{case}: expected {index} in\n{plan}");
        assert!(
            !plan.contains("Seq Scan"),
            "{case}: a sequential scan in\n{plan}"
        );
        println!("{case}:\n{plan}\n");
    }
    deployment.drop_database(db).await;
}
