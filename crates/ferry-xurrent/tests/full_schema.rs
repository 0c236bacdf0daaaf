//! Every root connection of the full embedded Xurrent schema: its query is built (nested
//! fields to depth 1 and to depth 6), parses as GraphQL, and validates against the SDL with
//! an independent checker written over async-graphql-parser's own AST (not over this crate's
//! model): every selected field exists on its parent type, every argument exists with the
//! variable's type, leaves have no selection and objects have one, inline fragments name
//! possible types, and every variable is declared and used.

use std::collections::{BTreeMap, BTreeSet};

use async_graphql_parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, Selection, SelectionSet, Type, TypeKind,
    TypeSystemDefinition,
};
use async_graphql_value::Value as GqlValue;
use ferry_xurrent::{
    include_options, input_fields, mutation_input_field, output_fields, Include, MutationPlan,
    QueryOptions, QueryPlan, Schema,
};
use serde_json::json;

struct SdlField {
    args: BTreeMap<String, String>,
    ty: String,
}

struct SdlType {
    kind: &'static str,
    fields: BTreeMap<String, SdlField>,
    possible: BTreeSet<String>,
}

fn type_string(t: &Type) -> String {
    let inner = match &t.base {
        BaseType::Named(n) => n.to_string(),
        BaseType::List(i) => format!("[{}]", type_string(i)),
    };
    if t.nullable {
        inner
    } else {
        format!("{inner}!")
    }
}

fn base_name(t: &Type) -> String {
    match &t.base {
        BaseType::Named(n) => n.to_string(),
        BaseType::List(i) => base_name(i),
    }
}

fn sdl_index(sdl: &str) -> BTreeMap<String, SdlType> {
    let doc = async_graphql_parser::parse_schema(sdl).unwrap();
    let mut out = BTreeMap::new();
    let mut implementers: Vec<(String, String)> = Vec::new();
    for def in doc.definitions {
        let TypeSystemDefinition::Type(t) = def else {
            continue;
        };
        let t = t.node;
        let name = t.name.node.to_string();
        let mut ty = SdlType {
            kind: "SCALAR",
            fields: BTreeMap::new(),
            possible: BTreeSet::new(),
        };
        let fields = |fs: &[async_graphql_parser::Positioned<
            async_graphql_parser::types::FieldDefinition,
        >]| {
            fs.iter()
                .map(|f| {
                    (
                        f.node.name.node.to_string(),
                        SdlField {
                            args: f
                                .node
                                .arguments
                                .iter()
                                .map(|a| {
                                    (a.node.name.node.to_string(), type_string(&a.node.ty.node))
                                })
                                .collect(),
                            ty: base_name(&f.node.ty.node),
                        },
                    )
                })
                .collect()
        };
        match &t.kind {
            TypeKind::Object(o) => {
                ty.kind = "OBJECT";
                ty.fields = fields(&o.fields);
                for i in &o.implements {
                    implementers.push((i.node.to_string(), name.clone()));
                }
            }
            TypeKind::Interface(o) => {
                ty.kind = "INTERFACE";
                ty.fields = fields(&o.fields);
            }
            TypeKind::Union(u) => {
                ty.kind = "UNION";
                ty.possible = u.members.iter().map(|m| m.node.to_string()).collect();
            }
            TypeKind::Enum(_) => ty.kind = "ENUM",
            TypeKind::InputObject(_) => ty.kind = "INPUT_OBJECT",
            TypeKind::Scalar => {}
        }
        out.insert(name, ty);
    }
    for (i, o) in implementers {
        if let Some(t) = out.get_mut(&i) {
            t.possible.insert(o);
        }
    }
    out
}

fn is_leaf(index: &BTreeMap<String, SdlType>, name: &str) -> bool {
    index
        .get(name)
        .is_none_or(|t| matches!(t.kind, "SCALAR" | "ENUM"))
}

/// Validate `text` against the SDL index; returns the nesting depth of object selections.
fn validate(index: &BTreeMap<String, SdlType>, text: &str, root: &str) -> usize {
    let doc: ExecutableDocument = async_graphql_parser::parse_query(text)
        .unwrap_or_else(|e| panic!("query does not parse: {e}\n{text}"));
    let DocumentOperations::Single(op) = doc.operations else {
        panic!("one anonymous operation expected: {text}");
    };
    let vars: BTreeMap<String, String> = op
        .node
        .variable_definitions
        .iter()
        .map(|v| {
            (
                v.node.name.node.to_string(),
                type_string(&v.node.var_type.node),
            )
        })
        .collect();
    let mut used = BTreeSet::new();
    let depth = walk(
        index,
        root,
        &op.node.selection_set.node,
        &vars,
        &mut used,
        text,
    );
    let declared: BTreeSet<String> = vars.keys().cloned().collect();
    assert_eq!(declared, used, "declared vs used variables in {text}");
    depth
}

fn walk(
    index: &BTreeMap<String, SdlType>,
    parent: &str,
    set: &SelectionSet,
    vars: &BTreeMap<String, String>,
    used: &mut BTreeSet<String>,
    text: &str,
) -> usize {
    let pt = index
        .get(parent)
        .unwrap_or_else(|| panic!("unknown type {parent} in {text}"));
    assert!(!set.items.is_empty(), "empty selection on {parent}");
    let mut names = BTreeSet::new();
    let mut depth = 0;
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => {
                let f = &f.node;
                let name = f.name.node.to_string();
                assert!(
                    names.insert(name.clone()),
                    "{name} selected twice on {parent}"
                );
                if name == "__typename" {
                    continue;
                }
                let fd = pt
                    .fields
                    .get(&name)
                    .unwrap_or_else(|| panic!("{parent} has no field {name}: {text}"));
                for (an, av) in &f.arguments {
                    let declared = fd
                        .args
                        .get(an.node.as_str())
                        .unwrap_or_else(|| panic!("{parent}.{name} has no argument {}", an.node));
                    match &av.node {
                        GqlValue::Variable(v) => {
                            let vt = vars
                                .get(v.as_str())
                                .unwrap_or_else(|| panic!("undeclared ${v} in {text}"));
                            // The variable's type is the argument's, or its non-null form.
                            assert!(
                                vt == declared || *vt == format!("{declared}!"),
                                "${v}: {vt} does not fit {parent}.{name}({an}: {declared})",
                                an = an.node
                            );
                            used.insert(v.to_string());
                        }
                        GqlValue::Number(_) => {
                            assert!(declared.starts_with("Int"), "{declared}")
                        }
                        other => panic!("unexpected literal {other} in {text}"),
                    }
                }
                // Required arguments must be passed.
                for (an, at) in &fd.args {
                    if at.ends_with('!') {
                        assert!(
                            f.arguments.iter().any(|(n, _)| n.node.as_str() == an),
                            "{parent}.{name} misses required {an}"
                        );
                    }
                }
                if is_leaf(index, &fd.ty) {
                    assert!(
                        f.selection_set.node.items.is_empty(),
                        "leaf {parent}.{name} has a selection"
                    );
                } else {
                    depth =
                        depth.max(1 + walk(index, &fd.ty, &f.selection_set.node, vars, used, text));
                }
            }
            Selection::InlineFragment(fr) => {
                let cond = fr
                    .node
                    .type_condition
                    .as_ref()
                    .expect("type condition")
                    .node
                    .on
                    .node
                    .to_string();
                assert!(
                    pt.possible.contains(&cond),
                    "{cond} is not a possible type of {parent}"
                );
                depth = depth.max(walk(
                    index,
                    &cond,
                    &fr.node.selection_set.node,
                    vars,
                    used,
                    text,
                ));
            }
            Selection::FragmentSpread(_) => panic!("no fragment spreads expected"),
        }
    }
    depth
}

/// Include the first `width` options at every level down to depth `depth` (the node type is
/// depth 1).
fn include_tree(schema: &Schema, ty: &str, depth: usize, width: usize) -> Include {
    let mut inc = Include::none();
    if depth <= 1 {
        return inc;
    }
    for opt in include_options(schema, ty).into_iter().take(width) {
        let u = schema.unwrap(&opt.ty);
        let sub = if schema.is_connection(u.name) {
            schema.node_type(u.name).unwrap_or(u.name).to_string()
        } else {
            u.name.to_string()
        };
        inc.fields.insert(
            opt.name.clone(),
            include_tree(schema, &sub, depth - 1, width),
        );
    }
    inc
}

#[test]
fn every_root_connection_builds_a_valid_query() {
    let schema = Schema::embedded().unwrap();
    let index = sdl_index(ferry_xurrent_schema::SDL);
    let roots: Vec<_> = schema
        .root_objects()
        .into_iter()
        .filter(|r| r.is_connection())
        .collect();
    assert!(roots.len() >= 70, "only {} root connections", roots.len());
    let mut deepest = 0;
    let mut longest = 0;
    for root in &roots {
        let node = root.record_type().to_string();
        // Depth 1: every nested field of the node type, with its scalar fields.
        let all_first_level = Include {
            fields: include_options(&schema, &node)
                .into_iter()
                .map(|o| (o.name.clone(), Include::none()))
                .collect(),
        };
        // Depth 6: a chain of the first two options at every level.
        let deep = include_tree(&schema, &node, 6, 2);
        for (label, include) in [
            ("none", Include::none()),
            ("depth1", all_first_level),
            ("depth6", deep),
        ] {
            let opts = QueryOptions {
                include: include.clone(),
                view: root.view.as_ref().map(|v| {
                    schema.get(&v.type_name).unwrap().enum_values[0]
                        .name
                        .clone()
                }),
                filter: root
                    .filter
                    .as_ref()
                    .map(|_| json!({"updatedAt": {"greaterThan": "2024-01-01T00:00:00Z"}})),
                order: root
                    .order
                    .as_ref()
                    .map(|_| json!([{"field": "id", "direction": "asc"}])),
                page_size: Some(10),
                limit: None,
            };
            let plan = QueryPlan::build(&schema, &root.name, &opts)
                .unwrap_or_else(|e| panic!("{}/{label}: {e}", root.name));
            let d = validate(&index, &plan.text, "Query");
            deepest = deepest.max(d);
            longest = longest.max(plan.text.len());
            // The output schema declares exactly the selected top-level record fields.
            let out = output_fields(&schema, &node, &include);
            for f in &out {
                assert!(
                    plan.selection
                        .split(' ')
                        .any(|w| w == f.id || w.starts_with(&format!("{}(", f.id))),
                    "{}: output field {} is not selected",
                    root.name,
                    f.id
                );
            }
            // Filters and their derived fields exist for every root with a filter.
            if let Some(f) = &root.filter {
                assert!(
                    !input_fields(&schema, &f.type_name, true).is_empty(),
                    "{}",
                    f.type_name
                );
            }
        }
    }
    // Connection: Query > root > nodes > node (1) … nested to depth 6 below the node.
    assert!(deepest >= 8, "deepest selection only {deepest} levels");
    println!(
        "{} root connections; deepest selection {deepest} object levels; longest query {longest} bytes",
        roots.len()
    );
}

#[test]
fn simple_roots_build_valid_queries() {
    let schema = Schema::embedded().unwrap();
    let index = sdl_index(ferry_xurrent_schema::SDL);
    let simple: Vec<_> = schema
        .root_objects()
        .into_iter()
        .filter(|r| !r.is_connection())
        .collect();
    assert!(simple.iter().any(|r| r.name == "me"));
    assert!(
        !schema.root_objects().iter().any(|r| r.name == "node"),
        "node(id:) needs arguments"
    );
    for root in simple {
        let inc = include_tree(&schema, root.record_type(), 3, 3);
        let plan = QueryPlan::build(
            &schema,
            &root.name,
            &QueryOptions {
                include: inc,
                ..Default::default()
            },
        )
        .unwrap();
        validate(&index, &plan.text, "Query");
    }
}

#[test]
fn every_mutation_builds_a_valid_document() {
    let schema = Schema::embedded().unwrap();
    let index = sdl_index(ferry_xurrent_schema::SDL);
    let mutations = schema.mutation_options();
    assert!(mutations.len() > 100, "{}", mutations.len());
    for m in mutations {
        let name = m["id"].as_str().unwrap();
        let plan = MutationPlan::build(&schema, name, &json!({})).unwrap();
        validate(&index, &plan.text, "Mutation");
        assert!(
            plan.selection.contains("errors { path message }")
                || plan.selection.contains("errors { message path }"),
            "{name}: {}",
            plan.selection
        );
        let input = mutation_input_field(&schema, name);
        assert!(input.required);
    }
}

#[test]
fn including_everything_is_refused_not_exploded() {
    let schema = Schema::embedded().unwrap();
    let everything = include_tree(&schema, "Request", 4, usize::MAX);
    let err = QueryPlan::build(
        &schema,
        "requests",
        &QueryOptions {
            include: everything,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        ferry_xurrent::Error::SelectionTooLarge(ferry_xurrent::MAX_SELECTED_FIELDS)
    );
}
