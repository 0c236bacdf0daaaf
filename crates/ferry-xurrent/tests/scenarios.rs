//! The pure-logic scenarios of xurrent_connector.md §9 (O: shared helpers, H: query input and
//! output schema, I: query run without HTTP, M: mutation) against the spec's "test schema"
//! (`fixtures/test_schema.graphql`), plus the static checks for `ferry validate`.

use ferry_core::schema::{Field, FieldType};
use ferry_xurrent::*;
use serde_json::{json, Value};

fn schema() -> Schema {
    Schema::from_sdl(include_str!("fixtures/test_schema.graphql")).expect("test schema parses")
}

fn ids(fields: &[Field]) -> Vec<&str> {
    fields.iter().map(|f| f.id.as_str()).collect()
}

fn field<'a>(fields: &'a [Field], id: &str) -> &'a Field {
    fields
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no field {id} in {:?}", ids(fields)))
}

fn enum_ids(f: &Field) -> Vec<String> {
    f.enumeration_ids()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn enum_labels(f: &Field) -> Vec<String> {
    f.enumeration
        .iter()
        .flatten()
        .map(|v| v["label"].as_str().unwrap().to_string())
        .collect()
}

fn people_plan(opts: QueryOptions) -> QueryPlan {
    QueryPlan::build(&schema(), "people", &opts).unwrap()
}

// ---- O. shared helpers -------------------------------------------------------------------

#[test]
fn o181_field_selection() {
    let s = schema();
    let none = Include::none();
    assert_eq!(selection(&s, "Organization", &none).unwrap(), "id name");
    assert_eq!(
        selection(&s, "Person", &none).unwrap(),
        "id name primaryEmail disabled"
    );
    assert_eq!(
        selection(&s, "Person", &Include::none().with_path(&["organization"])).unwrap(),
        "id name primaryEmail disabled organization { id name }"
    );
    assert_eq!(
        selection(&s, "Person", &Include::none().with_path(&["skills"])).unwrap(),
        "id name primaryEmail disabled skills(first: 100) { nodes { id name } }"
    );
    assert_eq!(selection(&s, "", &none).unwrap(), "");
    assert_eq!(selection_at(&s, "Person", &none, 7).unwrap(), "");
    // An unknown type (no fields) selects `id`.
    assert_eq!(selection(&s, "Nowhere", &none).unwrap(), "id");
    // A connection included from Query.
    let from_query = selection(&s, "Query", &Include::none().with_path(&["people"])).unwrap();
    assert!(
        from_query.contains("people(first: 100) { nodes { id name primaryEmail disabled } }"),
        "{from_query}"
    );
    // Payloads.
    let inc = Include::from_json(&json!({"request": true, "errors": true}));
    assert_eq!(
        selection(&s, "RequestCreatePayload", &inc).unwrap(),
        "request { id subject } errors { message path }"
    );
    let inc = Include::from_json(
        &json!({"request": true, "errors": true, "request_fields": {"customFields": true}}),
    );
    assert_eq!(
        selection(&s, "RequestCreatePayload", &inc).unwrap(),
        "request { id subject customFields { id value } } errors { message path }"
    );
}

#[test]
fn o182_type_reference_strings() {
    let named = TypeRef::Named("String".into());
    assert_eq!(named.type_string(), "String");
    assert_eq!(
        TypeRef::NonNull(Box::new(named.clone())).type_string(),
        "String!"
    );
    assert_eq!(TypeRef::List(Box::new(named)).type_string(), "[String]");
    let order = TypeRef::NonNull(Box::new(TypeRef::List(Box::new(TypeRef::NonNull(
        Box::new(TypeRef::Named("PersonOrder".into())),
    )))));
    assert_eq!(order.type_string(), "[PersonOrder!]!");
    // From introspection JSON too.
    let t = TypeRef::from_introspection(&json!({"kind": "LIST", "name": null, "ofType":
        {"kind": "NON_NULL", "name": null, "ofType": {"kind": "INPUT_OBJECT", "name": "PersonOrder"}}}));
    assert_eq!(t.type_string(), "[PersonOrder!]");
}

#[test]
fn o183_unwrapping() {
    let s = schema();
    let id = TypeRef::from_introspection(
        &json!({"kind": "NON_NULL", "name": null, "ofType": {"kind": "SCALAR", "name": "ID"}}),
    );
    let u = s.unwrap(&id);
    assert_eq!(
        (u.kind, u.name, u.list, u.required),
        (Kind::Scalar, "ID", false, true)
    );
    let people = TypeRef::from_introspection(
        &json!({"kind": "LIST", "name": null, "ofType": {"kind": "OBJECT", "name": "Person"}}),
    );
    let u = s.unwrap(&people);
    assert!(u.list && !u.required && u.kind == Kind::Object);
    let order = TypeRef::from_introspection(&json!({"kind": "LIST", "name": null, "ofType":
        {"kind": "NON_NULL", "name": null, "ofType": {"kind": "INPUT_OBJECT", "name": "PersonOrder"}}}));
    let u = s.unwrap(&order);
    assert!(u.list && u.required);
    let broken =
        TypeRef::from_introspection(&json!({"kind": "NON_NULL", "name": null, "ofType": null}));
    let u = s.unwrap(&broken);
    assert_eq!(
        (u.kind, u.name, u.list, u.required),
        (Kind::Scalar, "String", false, true)
    );
}

#[test]
fn o184_mutation_input_type_name() {
    let s = schema();
    assert_eq!(
        mutation_input_type(&s, "requestCreate"),
        "RequestCreateInput"
    );
    assert_eq!(
        mutation_input_type(&s, "unknownMutation"),
        "UnknownMutationInput"
    );
    let no_input = Schema::from_sdl("type Query { a: Int } type Mutation { ping: Int }").unwrap();
    assert_eq!(mutation_input_type(&no_input, "ping"), "PingInput");
}

#[test]
fn o185_root_field_listing() {
    let long = "a".repeat(41);
    let s = Schema::from_sdl(&format!("type Query {{ people: Int {long}: Int me: Int }}")).unwrap();
    assert_eq!(
        s.query_options(),
        vec![
            json!({"id": "people", "label": "People"}),
            json!({"id": "me", "label": "Me"})
        ]
    );
    let empty = Schema::from_introspection(&json!({"__schema": {"types": []}})).unwrap();
    assert!(empty.query_options().is_empty());
    assert!(empty.mutation_options().is_empty());
    let null_fields = Schema::from_introspection(&json!({"__schema": {
        "queryType": {"name": "Query"},
        "types": [{"kind": "OBJECT", "name": "Query", "fields": null}]
    }}))
    .unwrap();
    assert!(null_fields.query_options().is_empty());
    assert!(Schema::from_introspection(&json!({"data": null})).is_err());
}

#[test]
fn o186_required_args_detection() {
    let s = Schema::from_sdl(
        "type Query { a(x: Int!): Int b(x: Int! = 10): Int c: Int d(x: Int): Int }",
    )
    .unwrap();
    let q = s.query_root().unwrap();
    assert!(q.field("a").unwrap().is_skipped());
    assert!(!q.field("b").unwrap().is_skipped());
    assert!(!q.field("c").unwrap().is_skipped());
    assert!(!q.field("d").unwrap().is_skipped());
    // Introspection form: a default value of "10" counts.
    let iv: InputValue = InputValue {
        name: "x".into(),
        description: None,
        ty: TypeRef::NonNull(Box::new(TypeRef::Named("Int".into()))),
        default_value: Some("10".into()),
    };
    assert!(!iv.is_required_without_default());
}

#[test]
fn o187_flattening() {
    assert_eq!(
        flatten(&json!({"skills": {"nodes": [{"id": "s1", "name": "Ruby"}]}})),
        json!({"skills": [{"id": "s1", "name": "Ruby"}]})
    );
}

// ---- H. query input and output schema ----------------------------------------------------

#[test]
fn h94_object_enumeration_with_the_test_schema() {
    assert_eq!(
        schema().query_options(),
        vec![
            json!({"id": "people", "label": "People"}),
            json!({"id": "me", "label": "Me"})
        ]
    );
}

#[test]
fn h96_view_enumeration_is_humanized() {
    let s = schema();
    let root = s.root_object("people").unwrap();
    let fields = query_input_fields(&s, &root, &json!({}));
    let view = field(&fields, "view");
    assert_eq!(
        enum_ids(view),
        ["all", "disabled", "internal", "directory", "supportDomain"]
    );
    assert!(enum_labels(view).contains(&"Support Domain".to_string()));
    assert!(!enum_labels(view).contains(&"supportDomain".to_string()));
}

#[test]
fn h97_filter_fields_sorted_with_types_and_hints() {
    let s = schema();
    let root = s.root_object("people").unwrap();
    let fields = query_input_fields(&s, &root, &json!({}));
    let filter = field(&fields, "filter");
    assert_eq!(filter.ty, FieldType::Nested);
    assert_eq!(
        ids(&filter.fields),
        ["createdAt", "disabled", "name", "primaryEmail", "query"]
    );
    let types: Vec<(FieldType, bool)> = filter.fields.iter().map(|f| (f.ty, f.array)).collect();
    assert_eq!(
        types,
        [
            (FieldType::DateTime, false),
            (FieldType::Boolean, false),
            (FieldType::String, true),
            (FieldType::String, true),
            (FieldType::String, false)
        ]
    );
    assert_eq!(
        field(&filter.fields, "query").hint.as_deref(),
        Some("Search by keyword")
    );
    assert_eq!(
        field(&filter.fields, "disabled").hint.as_deref(),
        Some("Filter by disabled")
    );
}

#[test]
fn h98_order_is_a_nested_list() {
    let s = schema();
    let root = s.root_object("people").unwrap();
    let fields = query_input_fields(&s, &root, &json!({}));
    let order = field(&fields, "order");
    assert!(order.array && order.ty == FieldType::Nested);
    let f = field(&order.fields, "field");
    assert!(f.required);
    assert_eq!(f.hint.as_deref(), Some("Field to order by"));
    assert_eq!(enum_ids(f), ["name", "createdAt", "updatedAt"]);
    assert!(enum_labels(f).contains(&"Created At".to_string()));
    let d = field(&order.fields, "direction");
    assert!(!d.required);
    assert_eq!(d.hint.as_deref(), Some("Order direction"));
    assert_eq!(enum_ids(d), ["asc", "desc"]);
    assert_eq!(enum_labels(d), ["Asc", "Desc"]);
}

#[test]
fn h99_simple_object_has_no_view_filter_order() {
    let s = schema();
    let me = s.root_object("me").unwrap();
    assert!(!me.is_connection());
    let fields = query_input_fields(&s, &me, &json!({}));
    assert_eq!(ids(&fields), ["include_fields"]);
}

#[test]
fn h100_connection_output_with_organization() {
    let s = schema();
    let root = s.root_object("people").unwrap();
    let out = page_output_fields(
        &s,
        &root,
        &Include::from_json(&json!({"organization": true})),
    );
    assert_eq!(ids(&out), ["total_count", "has_next_page", "nodes"]);
    let nodes = field(&out, "nodes");
    assert!(nodes.array);
    assert_eq!(nodes.label.as_deref(), Some("Records"));
    assert_eq!(field(&nodes.fields, "id").ty, FieldType::String);
    let name = field(&nodes.fields, "name");
    assert_eq!(name.ty, FieldType::String);
    assert_eq!(name.hint.as_deref(), Some("Full name of the person."));
    assert_eq!(field(&nodes.fields, "disabled").ty, FieldType::Boolean);
    field(&nodes.fields, "primaryEmail");
    let org = field(&nodes.fields, "organization");
    assert_eq!(
        org.hint.as_deref(),
        Some("Organization the person belongs to.")
    );
    assert_eq!(ids(&org.fields), ["id", "name"]);
    assert!(!nodes.fields.iter().any(|f| f.id == "skills"));
}

#[test]
fn h101_simple_object_output_at_top_level() {
    let s = schema();
    let me = s.root_object("me").unwrap();
    let out = page_output_fields(&s, &me, &Include::none());
    assert_eq!(ids(&out), ["id", "name", "primaryEmail", "disabled"]);
}

#[test]
fn h102_included_connection_is_a_list_of_nodes() {
    let s = schema();
    let root = s.root_object("people").unwrap();
    let out = record_fields(&s, &root, &Include::from_json(&json!({"skills": true})));
    let skills = field(&out, "skills");
    assert!(skills.array && skills.ty == FieldType::Nested);
    assert_eq!(ids(&skills.fields), ["id", "name"]);
}

#[test]
fn h_include_fields_booleans_and_sections() {
    let s = schema();
    let root = s.root_object("people").unwrap();
    let inc = include_fields_field(&s, root.record_type(), &json!({"skills": true}));
    assert_eq!(inc.label.as_deref(), Some("Include nested fields"));
    // Skill has no nested fields: no skills_fields section.
    assert_eq!(ids(&inc.fields), ["organization", "skills"]);
    assert!(inc
        .fields
        .iter()
        .all(|f| f.ty == FieldType::Boolean && f.default == Some(json!(false))));
    let inc = include_fields_field(&s, "RequestCreatePayload", &json!({"request": "true"}));
    assert_eq!(ids(&inc.fields), ["errors", "request", "request_fields"]);
    let sec = field(&inc.fields, "request_fields");
    assert_eq!(sec.label.as_deref(), Some("Request fields"));
    assert_eq!(ids(&sec.fields), ["customFields"]);
}

// ---- I. query run, the pure parts ---------------------------------------------------------

#[test]
fn i103_104_first_page_request_and_reading() {
    let plan = people_plan(QueryOptions {
        include: Include::from_json(&json!({"organization": true})),
        page_size: Some(25),
        ..Default::default()
    });
    assert_eq!(
        plan.text,
        "query($first: Int!, $after: String) { people(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } nodes { id name primaryEmail disabled organization { id name } } } }"
    );
    let body = plan.request(&Cursor::default()).unwrap();
    assert_eq!(body["variables"], json!({"first": 25, "after": null}));
    let data = json!({"people": {"totalCount": 2, "pageInfo": {"hasNextPage": false, "endCursor": "c2"},
    "nodes": [
        {"id": "1", "name": "John Doe", "organization": {"id": "o1", "name": "Acme"}},
        {"id": "2", "name": "Jane Smith", "organization": {"id": "o1", "name": "Acme"}}
    ]}});
    let page = plan.read_page(&data, &Cursor::default()).unwrap();
    assert_eq!(page.total_count, Some(2));
    assert!(!page.has_next_page());
    // The page output with the answer's metadata resolves against the declared schema.
    let meta = ResponseMeta::from_headers(|h| match h {
        "x-request-id" => Some("req-test-123".into()),
        "x-ratelimit-limit" => Some("3600".into()),
        "x-costlimit-cost" => Some("12".into()),
        _ => None,
    });
    let s = schema();
    let mut fields = page_output_fields(
        &s,
        &plan.object,
        &Include::from_json(&json!({"organization": true})),
    );
    fields.extend(metadata_fields());
    let out = ferry_core::schema::Schema::new("query_result", fields)
        .resolve(&page.output(&meta), None)
        .unwrap();
    assert_eq!(out["total_count"], 2);
    assert_eq!(out["has_next_page"], false);
    assert_eq!(out["nodes"][1]["organization"]["name"], "Acme");
    assert_eq!(out["ratelimit"]["limit"], 3600);
    assert_eq!(out["costlimit"]["cost"], 12);
    assert_eq!(out["request_id"], "req-test-123");
    let names: Vec<&str> = page
        .records
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["John Doe", "Jane Smith"]);
}

#[test]
fn i105_default_page_size_is_100() {
    let plan = people_plan(QueryOptions {
        view: Some("all".into()),
        filter: Some(json!({"name": ["Acme"]})),
        ..Default::default()
    });
    let body = plan.request(&Cursor::default()).unwrap();
    assert_eq!(body["variables"]["first"], 100);
}

#[test]
fn i106_next_page_and_the_cursor_as_a_variable() {
    let plan = people_plan(QueryOptions::default());
    let data = json!({"people": {"totalCount": 50, "pageInfo": {"hasNextPage": true, "endCursor": "cursor-abc"},
        "nodes": [{"id": "1"}]}});
    let page = plan.read_page(&data, &Cursor::default()).unwrap();
    assert!(page.has_next_page());
    assert_eq!(page.total_count, Some(50));
    let next = page.next.unwrap();
    assert_eq!(next.end_cursor.as_deref(), Some("cursor-abc"));
    let body = plan.request(&next).unwrap();
    assert_eq!(body["variables"]["after"], "cursor-abc");
    // The text is the same for every page: the cursor never appears in it.
    assert_eq!(body["query"], plan.text.as_str());
    assert!(!plan.text.contains("cursor-abc"));
}

#[test]
fn i_a_hostile_cursor_stays_a_variable() {
    let plan = people_plan(QueryOptions::default());
    let evil =
        r#"x") { id } } mutation { personUpdate(input: {id: "1"}) { errors { message } } } #"#;
    let cursor = Cursor {
        end_cursor: Some(evil.into()),
        fetched: 1,
    };
    let body = plan.request(&cursor).unwrap();
    assert_eq!(body["query"], plan.text.as_str());
    assert_eq!(body["variables"]["after"], evil);
}

#[test]
fn i107_no_data() {
    let plan = people_plan(QueryOptions::default());
    let err = plan
        .read_page(&json!({"people": null}), &Cursor::default())
        .unwrap_err();
    assert_eq!(err.to_string(), "No data returned for 'people'");
    let err = plan
        .read_page(&json!({"people": {}}), &Cursor::default())
        .unwrap_err();
    assert_eq!(err.to_string(), "No data returned for 'people'");
}

fn page_of(n: usize, has_next: bool, cursor: &str) -> Value {
    let nodes: Vec<Value> = (0..n).map(|i| json!({"id": i.to_string()})).collect();
    json!({"people": {"totalCount": 1000, "pageInfo": {"hasNextPage": has_next, "endCursor": cursor}, "nodes": nodes}})
}

#[test]
fn i108_limit_below_page_size() {
    let plan = people_plan(QueryOptions {
        page_size: Some(25),
        limit: Some(5),
        ..Default::default()
    });
    assert_eq!(
        plan.request(&Cursor::default()).unwrap()["variables"]["first"],
        5
    );
}

#[test]
fn i109_limit_reached_ends_paging() {
    let plan = people_plan(QueryOptions {
        page_size: Some(10),
        limit: Some(10),
        ..Default::default()
    });
    let page = plan
        .read_page(&page_of(10, true, "cursor-1"), &Cursor::default())
        .unwrap();
    assert!(page.next.is_none());
    assert!(!page.has_next_page());
}

#[test]
fn i110_111_limit_across_pages() {
    let plan = people_plan(QueryOptions {
        page_size: Some(10),
        limit: Some(25),
        ..Default::default()
    });
    let page = plan
        .read_page(&page_of(10, true, "cursor-1"), &Cursor::default())
        .unwrap();
    assert_eq!(
        page.next,
        Some(Cursor {
            end_cursor: Some("cursor-1".into()),
            fetched: 10
        })
    );
    let plan = people_plan(QueryOptions {
        page_size: Some(25),
        limit: Some(15),
        ..Default::default()
    });
    let cursor = Cursor {
        end_cursor: Some("cursor-1".into()),
        fetched: 10,
    };
    let body = plan.request(&cursor).unwrap();
    assert_eq!(body["variables"]["first"], 5);
    assert_eq!(body["variables"]["after"], "cursor-1");
    let page = plan
        .read_page(&page_of(5, true, "cursor-2"), &cursor)
        .unwrap();
    assert!(page.next.is_none());
    // And no request at all once the limit is reached.
    assert!(plan
        .request(&Cursor {
            end_cursor: Some("cursor-2".into()),
            fetched: 15
        })
        .is_none());
}

#[test]
fn i112_without_limit_paging_follows_the_server() {
    let plan = people_plan(QueryOptions {
        page_size: Some(25),
        ..Default::default()
    });
    let page = plan
        .read_page(&page_of(25, true, "c"), &Cursor::default())
        .unwrap();
    assert_eq!(page.next.unwrap().end_cursor.as_deref(), Some("c"));
    // A blank cursor ends paging even when the server says there is more.
    let page = plan
        .read_page(&page_of(25, true, " "), &Cursor::default())
        .unwrap();
    assert!(page.next.is_none());
}

#[test]
fn i113_114_nested_connection_flattened_in_records() {
    let plan = people_plan(QueryOptions {
        include: Include::from_json(&json!({"skills": true})),
        ..Default::default()
    });
    assert!(plan
        .text
        .contains("skills(first: 100) { nodes { id name } }"));
    let data = json!({"people": {"totalCount": 1, "pageInfo": {"hasNextPage": false, "endCursor": null},
        "nodes": [{"id": "1", "name": "John", "undeclaredField": 1,
                   "skills": {"nodes": [{"id": "s1", "name": "Ruby"}, {"id": "s2", "name": "GraphQL"}]}}]}});
    let page = plan.read_page(&data, &Cursor::default()).unwrap();
    assert_eq!(
        page.records[0]["skills"],
        json!([{"id": "s1", "name": "Ruby"}, {"id": "s2", "name": "GraphQL"}])
    );
    // The declared output strips what the schema does not declare.
    let s = schema();
    let fields = record_fields(
        &s,
        &plan.object,
        &Include::from_json(&json!({"skills": true})),
    );
    let resolved = ferry_core::schema::Schema::new("record", fields)
        .resolve(&page.records[0], None)
        .unwrap();
    assert!(resolved.get("undeclaredField").is_none());
    assert_eq!(resolved["name"], "John");
    assert_eq!(resolved["skills"][1]["name"], "GraphQL");
    let without = people_plan(QueryOptions::default());
    assert!(!without.text.contains("skills"));
}

#[test]
fn i115_116_simple_object() {
    let plan = QueryPlan::build(
        &schema(),
        "me",
        &QueryOptions {
            include: Include::from_json(&json!({"skills": true})),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        plan.text,
        "query { me { id name primaryEmail disabled skills(first: 100) { nodes { id name } } } }"
    );
    assert_eq!(
        plan.request(&Cursor::default()).unwrap(),
        json!({"query": plan.text})
    );
    let v = plan
        .read_simple(&json!({"me": {"id": "u1", "name": "Current User", "skills": {"nodes": [{"id": "s1", "name": "Ruby"}]}}}))
        .unwrap();
    assert_eq!(v["name"], "Current User");
    assert_eq!(v["skills"], json!([{"id": "s1", "name": "Ruby"}]));
    let err = plan.read_simple(&json!({"me": null})).unwrap_err();
    assert!(err.to_string().starts_with("No data returned"));
}

#[test]
fn i117_120_view_filter_order_as_variables() {
    let plan = people_plan(QueryOptions {
        view: Some("disabled".into()),
        ..Default::default()
    });
    assert!(plan.text.contains("$view: PersonView"));
    assert!(plan.text.contains("view: $view"));
    assert_eq!(
        plan.request(&Cursor::default()).unwrap()["variables"]["view"],
        "disabled"
    );

    let plan = people_plan(QueryOptions {
        filter: Some(json!({"name": ["John"], "query": "", "primaryEmail": [], "disabled": false})),
        ..Default::default()
    });
    assert!(plan.text.contains("$filter: PersonFilter"));
    assert!(plan.text.contains("filter: $filter"));
    assert_eq!(
        plan.request(&Cursor::default()).unwrap()["variables"]["filter"],
        json!({"name": ["John"], "disabled": false})
    );
    let plan = people_plan(QueryOptions::default());
    assert!(!plan.text.contains("$filter"));
    assert!(plan.request(&Cursor::default()).unwrap()["variables"]
        .get("filter")
        .is_none());

    let plan = people_plan(QueryOptions {
        order: Some(
            json!([{"field": "name", "direction": "asc", "extra": 1}, {"field": "createdAt"}]),
        ),
        ..Default::default()
    });
    assert!(plan.text.contains("$order: [PersonOrder!]"));
    assert!(plan.text.contains("order: $order"));
    assert_eq!(
        plan.request(&Cursor::default()).unwrap()["variables"]["order"],
        json!([{"field": "name", "direction": "asc"}, {"field": "createdAt"}])
    );

    let plan = people_plan(QueryOptions {
        view: Some("all".into()),
        filter: Some(json!({"disabled": true})),
        order: Some(json!([{"field": "name", "direction": "desc"}])),
        ..Default::default()
    });
    assert_eq!(
        plan.text,
        "query($first: Int!, $after: String, $view: PersonView, $filter: PersonFilter, $order: [PersonOrder!]) { people(first: $first, after: $after, view: $view, filter: $filter, order: $order) { totalCount pageInfo { hasNextPage endCursor } nodes { id name primaryEmail disabled } } }"
    );
    let vars = &plan.request(&Cursor::default()).unwrap()["variables"];
    assert_eq!(vars["view"], "all");
    assert_eq!(vars["filter"], json!({"disabled": true}));
    assert_eq!(
        vars["order"],
        json!([{"field": "name", "direction": "desc"}])
    );
}

#[test]
fn i123_graphql_errors_are_reported_with_their_messages() {
    assert_eq!(
        graphql_errors(&json!({"errors": [{"message": "Not authorized"}, {"code": 1}]})).as_deref(),
        Some(r#"Not authorized; {"code":1}"#)
    );
    assert_eq!(graphql_errors(&json!({"data": {}})), None);
    assert_eq!(graphql_errors(&json!({"errors": []})), None);
}

#[test]
fn unknown_and_uncallable_root_objects() {
    let s = schema();
    assert_eq!(
        QueryPlan::build(&s, "peple", &QueryOptions::default())
            .unwrap_err()
            .to_string(),
        "unknown query object 'peple'"
    );
    let s2 = Schema::from_sdl("type Query { request(id: ID!): Int }").unwrap();
    assert_eq!(
        s2.root_object("request").unwrap_err().to_string(),
        "query object 'request' cannot be queried: it requires the arguments id"
    );
    assert!(s2.root_objects().is_empty());
}

// ---- M. mutation ----------------------------------------------------------------------------

#[test]
fn m155_mutation_options() {
    let opts = schema().mutation_options();
    assert!(opts.contains(&json!({"id": "requestCreate", "label": "Request Create"})));
    assert!(opts.contains(&json!({"id": "personUpdate", "label": "Person Update"})));
}

#[test]
fn m154_without_schema_the_input_is_a_hash() {
    let empty = Schema::from_introspection(&json!({"__schema": {"types": []}})).unwrap();
    let f = mutation_input_field(&empty, "requestCreate");
    assert_eq!(f.ty, FieldType::Hash);
    assert!(f.required);
    assert_eq!(
        f.hint.as_deref(),
        Some("The mutation input variables as a JSON object.")
    );
}

#[test]
fn m156_request_create_input() {
    let f = mutation_input_field(&schema(), "requestCreate");
    assert_eq!(f.ty, FieldType::Nested);
    assert!(f.required);
    assert_eq!(
        ids(&f.fields),
        ["subject", "category", "source", "sourceID", "customFields"]
    );
    assert!(field(&f.fields, "subject").required);
    let cat = field(&f.fields, "category");
    assert!(!cat.required);
    assert_eq!(enum_ids(cat), ["incident", "rfc", "rfi", "complaint"]);
    let cf = field(&f.fields, "customFields");
    assert!(cf.array && !cf.required && cf.ty == FieldType::Nested);
    assert!(field(&cf.fields, "id").required);
    assert_eq!(field(&cf.fields, "value").ty, FieldType::Any);
    assert!(!field(&f.fields, "source").required);
}

#[test]
fn m157_person_update_input_without_client_mutation_id() {
    let f = mutation_input_field(&schema(), "personUpdate");
    assert_eq!(ids(&f.fields), ["id", "name", "primaryEmail", "disabled"]);
    let id = field(&f.fields, "id");
    assert!(id.required && id.ty == FieldType::String);
}

#[test]
fn m158_request_create_output() {
    let s = schema();
    let plan = MutationPlan::build(&s, "requestCreate", &json!({})).unwrap();
    let out = mutation_output_fields(&s, &plan);
    assert_eq!(ids(&out), ["request", "errors"]);
    assert_eq!(ids(&field(&out, "request").fields), ["id", "subject"]);
    assert_eq!(ids(&field(&out, "errors").fields), ["message", "path"]);
    // A payload without errors gets the fallback, nested properly.
    let s2 = Schema::from_sdl(
        "type Query { a: Int } type Mutation { ping(input: PingInput!): PingPayload } input PingInput { x: Int } type PingPayload { ok: Boolean }",
    )
    .unwrap();
    let plan = MutationPlan::build(&s2, "ping", &json!({})).unwrap();
    let out = mutation_output_fields(&s2, &plan);
    assert_eq!(ids(&out), ["ok", "errors"]);
    assert_eq!(ids(&field(&out, "errors").fields), ["message", "path"]);
}

#[test]
fn m164_169_request_text_and_body() {
    let s = schema();
    let plan = MutationPlan::build(&s, "requestCreate", &json!({})).unwrap();
    assert_eq!(
        plan.text,
        "mutation($input: RequestCreateInput!) { requestCreate(input: $input) { request { id subject } errors { message path } } }"
    );
    let input = json!({"subject": "Test request", "category": "incident"});
    let body = plan.request(&input).unwrap();
    assert_eq!(body["variables"]["input"], input);
    assert!(body.to_string().contains("RequestCreateInput"));
    let out = plan
        .read(&json!({"requestCreate": {"request": {"id": "r1", "subject": "Test request"}, "errors": []}}))
        .unwrap();
    assert_eq!(out["request"]["subject"], "Test request");
    // Only a JSON object is an input.
    let err = plan.request(&json!("subject")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the input of mutation 'requestCreate' must be a JSON object, found a string"
    );
}

#[test]
fn m165_custom_field_values_pass_through() {
    let s = schema();
    let plan = MutationPlan::build(
        &s,
        "requestCreate",
        &json!({"request": true, "request_fields": {"customFields": true}}),
    )
    .unwrap();
    assert!(plan
        .text
        .contains("request { id subject customFields { id value } }"));
    let cfs = json!([{"id": "is_boolean", "value": false}, {"id": "affected_teams", "value": ["support", "security", "ops"]},
                     {"id": "my_string", "value": "xyz"}, {"id": "my_number", "value": 2}]);
    let body = plan
        .request(&json!({"subject": "x", "customFields": cfs}))
        .unwrap();
    assert_eq!(body["variables"]["input"]["customFields"], cfs);
    let out = plan
        .read(&json!({"requestCreate": {"request": {"id": "r", "subject": "x", "customFields": cfs}, "errors": null}}))
        .unwrap();
    assert_eq!(out["request"]["customFields"], cfs);
}

#[test]
fn m166_person_update_with_skills() {
    let s = schema();
    let inc = json!({"person": true, "person_fields": {"skills": true}});
    let plan = MutationPlan::build(&s, "personUpdate", &inc).unwrap();
    assert!(plan.text.contains(
        "person { id name primaryEmail disabled skills(first: 100) { nodes { id name } } }"
    ));
    let out = plan
        .read(&json!({"personUpdate": {"person": {"id": "p", "undeclaredField": 1, "skills": {"nodes": [{"id": "s1", "name": "Ruby"}]}}, "errors": []}}))
        .unwrap();
    let fields = mutation_output_fields(&s, &plan);
    let resolved = ferry_core::schema::Schema::new("mutation_result", fields)
        .resolve(&out, None)
        .unwrap();
    assert_eq!(
        resolved["person"]["skills"],
        json!([{"id": "s1", "name": "Ruby"}])
    );
    assert!(resolved["person"].get("undeclaredField").is_none());
    let plain = MutationPlan::build(&s, "personUpdate", &json!({})).unwrap();
    assert!(!plain.text.contains("skills"));
    // Excluding a default-included payload field.
    let no_errors = MutationPlan::build(&s, "personUpdate", &json!({"errors": false})).unwrap();
    assert!(!no_errors.text.contains("errors"));
}

#[test]
fn m167_168_payload_errors_and_no_data() {
    let s = schema();
    let plan = MutationPlan::build(&s, "requestCreate", &json!({})).unwrap();
    let err = plan
        .read(&json!({"requestCreate": {"request": null, "errors": [
            {"message": "Subject is required", "path": ["subject"]},
            {"message": null},
            {"message": "Invalid category"}]}}))
        .unwrap_err();
    assert_eq!(
        err,
        Error::MutationErrors(vec![
            "Subject is required".into(),
            "Invalid category".into()
        ])
    );
    assert_eq!(
        err.to_string(),
        "Mutation error: Subject is required; Invalid category"
    );
    // An errors list without messages does not fail.
    assert!(plan
        .read(&json!({"requestCreate": {"request": {"id": "r"}, "errors": [{"path": ["x"]}]}}))
        .is_ok());
    let err = plan.read(&json!({"requestCreate": null})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "No data returned for mutation 'requestCreate'"
    );
    assert!(matches!(
        MutationPlan::build(&s, "requestDestroy", &json!({})),
        Err(Error::UnknownMutation(_))
    ));
}

// ---- static checks ------------------------------------------------------------------------

#[test]
fn checks_name_what_is_wrong() {
    let s = schema();
    assert!(check_query(
        &s,
        "people",
        Some(&json!({"organization": true, "skills": true})),
        Some(&json!("supportDomain")),
        Some(&json!({"name": ["x"], "disabled": true})),
        Some(&json!([{"field": "createdAt", "direction": "desc"}]))
    )
    .is_empty());
    assert_eq!(
        check_query(&s, "peple", None, None, None, None),
        ["unknown query object 'peple' (did you mean 'people'?)"]
    );
    let m = check_query(
        &s,
        "people",
        Some(&json!({"organisation": true})),
        None,
        None,
        None,
    );
    assert_eq!(
        m,
        ["include_fields: unknown field 'organisation' of Person (did you mean 'organization'?)"]
    );
    let m = check_query(&s, "people", Some(&json!({"name": true})), None, None, None);
    assert_eq!(
        m,
        ["include_fields: field 'name' of Person is not an object and is always selected"]
    );
    let m = check_query(&s, "people", None, Some(&json!("everyone")), None, None);
    assert_eq!(
        m,
        ["view: invalid value \"everyone\" for PersonView (expected one of: all, disabled, internal, directory, supportDomain)"]
    );
    let m = check_query(
        &s,
        "people",
        None,
        None,
        Some(&json!({"nmae": ["x"]})),
        None,
    );
    assert_eq!(
        m,
        ["filter: unknown key 'nmae' for PersonFilter (did you mean 'name'?)"]
    );
    let m = check_query(
        &s,
        "people",
        None,
        None,
        None,
        Some(&json!([{"field": "age"}])),
    );
    assert_eq!(
        m,
        ["order[0].field: invalid value \"age\" for PersonOrderField (expected one of: name, createdAt, updatedAt)"]
    );
    let m = check_query(&s, "people", None, None, Some(&json!({"zzz": 1})), None);
    assert_eq!(
        m,
        ["filter: unknown key 'zzz' for PersonFilter (known: query, disabled, name, primaryEmail, createdAt)"]
    );
    assert_eq!(
        check_mutation(&s, "requestCreat", None, None),
        ["unknown mutation 'requestCreat' (did you mean 'requestCreate'?)"]
    );
    // Templates are run-time values.
    assert!(check_query(
        &s,
        "people",
        None,
        Some(&json!("{{ vars.view }}")),
        None,
        None
    )
    .is_empty());
    // Nested include sections are checked too.
    let m = check_mutation(
        &s,
        "requestCreate",
        Some(&json!({"request": true, "request_fields": {"custom": true}})),
        None,
    );
    assert_eq!(
        m,
        ["include_fields.request_fields: unknown field 'custom' of Request (nested fields: customFields)"]
    );
    assert_eq!(
        check_mutation(&s, "requestDestroy", None, None),
        ["unknown mutation 'requestDestroy'"]
    );
    let m = check_mutation(
        &s,
        "requestCreate",
        None,
        Some(&json!({"subject": "x", "category": "bug", "customFields": [{"id": "a", "valu": 1}]})),
    );
    assert_eq!(
        check_mutation(
            &s,
            "requestCreate",
            None,
            Some(&json!({"customFields": [{"value": 1}]}))
        ),
        [
            "input: missing required key 'subject' for RequestCreateInput",
            "input.customFields[0]: missing required key 'id' for CustomFieldInput"
        ]
    );
    assert_eq!(
        m,
        [
            "input.category: invalid value \"bug\" for RequestCategory (expected one of: incident, rfc, rfi, complaint)",
            "input.customFields[0]: unknown key 'valu' for CustomFieldInput (did you mean 'value'?)"
        ]
    );
}

#[test]
fn schema_model_round_trips_through_json() {
    let s = schema();
    let text = serde_json::to_string(&s).unwrap();
    let back: Schema = serde_json::from_str(&text).unwrap();
    assert_eq!(back, s);
}

#[test]
fn introspection_and_sdl_give_the_same_model() {
    // A small hand-written introspection answer of part of the test schema.
    let tr = |kind: &str, name: &str| json!({"kind": kind, "name": name, "ofType": null});
    let nn = |inner: Value| json!({"kind": "NON_NULL", "name": null, "ofType": inner});
    let intro = json!({"data": {"__schema": {
    "queryType": {"name": "Query"}, "mutationType": null,
    "types": [
        {"kind": "OBJECT", "name": "Query", "description": null, "fields": [
            {"name": "me", "description": null, "args": [], "type": tr("OBJECT", "Org")}
        ], "inputFields": null, "enumValues": null, "possibleTypes": null},
        {"kind": "OBJECT", "name": "Org", "description": "An org", "fields": [
            {"name": "id", "description": "Id", "args": [], "type": nn(tr("SCALAR", "ID"))},
            {"name": "kind", "description": null, "args": [
                {"name": "x", "description": null, "type": tr("SCALAR", "Int"), "defaultValue": "3"}
             ], "type": tr("ENUM", "OrgKind")}
        ], "inputFields": null, "enumValues": null, "possibleTypes": null},
        {"kind": "ENUM", "name": "OrgKind", "description": null, "fields": null, "inputFields": null,
         "enumValues": [{"name": "big", "description": null}, {"name": "_12_5", "description": null}],
         "possibleTypes": null},
        {"kind": "OBJECT", "name": "__Schema", "description": null, "fields": [], "inputFields": null,
         "enumValues": null, "possibleTypes": null}
    ]}}});
    let mut from_intro = Schema::from_introspection(&intro).unwrap();
    assert!(from_intro.get("__Schema").is_none());
    let mut wire = ferry_xurrent_schema::WireValues::new();
    wire.insert(("OrgKind".into(), "_12_5".into()), "12.5".into());
    from_intro.apply_wire_values(&wire);
    let from_sdl = Schema::from_sdl(
        r#"schema { query: Query }
        type Query { me: Org }
        "An org" type Org { "Id" id: ID! kind(x: Int = 3): OrgKind }
        enum OrgKind { big _12_5 @wireValue(value: "12.5") }"#,
    )
    .unwrap();
    for name in ["Query", "Org", "OrgKind"] {
        assert_eq!(from_intro.get(name), from_sdl.get(name), "{name}");
    }
    let kind = from_sdl.get("OrgKind").unwrap();
    assert_eq!(kind.enum_value("12.5").unwrap().name, "_12_5");
    assert_eq!(kind.enum_value("_12_5").unwrap().json_value(), "12.5");
}

#[test]
fn cycles_and_depth_are_bounded() {
    // A self-referencing type: every level offers `child` again.
    let s = Schema::from_sdl(
        "type Query { nodes(first: Int, after: String): NodeConnection } type NodeConnection { nodes: [Node] } \
         type Node { id: ID! child: Node children(first: Int): NodeConnection }",
    )
    .unwrap();
    let seven = Include::none().with_path(&[
        "child", "child", "child", "child", "child", "child", "child",
    ]);
    let sel = selection(&s, "Node", &seven).unwrap();
    // Depth 1 is the node itself; children are selected down to depth 6 and no further.
    assert_eq!(
        sel,
        "id child { id child { id child { id child { id child { id } } } } }"
    );
    let out = output_fields(&s, "Node", &seven);
    let mut depth = 1;
    let mut cur = &out;
    while let Some(c) = cur.iter().find(|f| f.id == "child") {
        depth += 1;
        cur = &c.fields;
    }
    assert_eq!(depth, 6);
    // Deterministic: the same include gives the same text, whatever the JSON key order.
    let a = Include::from_json(
        &json!({"children": true, "child": true, "child_fields": {"child": true}}),
    );
    let b = Include::from_json(
        &serde_json::from_str(
            r#"{"child_fields": {"child": true}, "child": true, "children": true}"#,
        )
        .unwrap(),
    );
    assert_eq!(
        selection(&s, "Node", &a).unwrap(),
        selection(&s, "Node", &b).unwrap()
    );
    // The check says so when an include goes deeper than 6 levels.
    let deep = json!({"child": true, "child_fields": {"child": true, "child_fields": {"child": true,
        "child_fields": {"child": true, "child_fields": {"child": true, "child_fields": {"child": true}}}}}});
    let m = check_query(&s, "nodes", Some(&deep), None, None, None);
    assert_eq!(
        m,
        ["include_fields.child_fields.child_fields.child_fields.child_fields.child_fields: nested fields deeper than 6 levels are not selected"]
    );
    // Cyclic input objects become hash fields instead of recursing.
    let s = Schema::from_sdl("type Query { a: Int } input F { and: [F!] name: String }").unwrap();
    let fields = input_fields(&s, "F", true);
    assert_eq!(ids(&fields), ["and", "name"]);
    assert_eq!(fields[0].ty, FieldType::Hash);
    assert!(fields[0].array);
}
