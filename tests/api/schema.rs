//! The exported SDL in schema.graphql is the schema the code serves.

#[test]
fn schema_graphql_matches_the_served_schema() {
    let served = oms::graphql::sdl();
    insta::assert_snapshot!("schema", served);
    let exported = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql exists");
    assert!(
        exported == served,
        "schema.graphql is out of date: run `cargo run -- schema > schema.graphql`"
    );
}
