//! The schema model: every named type of a GraphQL schema, indexed by name, built from a
//! standard introspection result (spec §4.1) or from an SDL text (the schema that ships with
//! Ferry), plus the pure helpers of spec §4.2 (unwrapping, type mapping, type reference
//! strings, connection detection, field collection, the skip rule).

use std::collections::{BTreeMap, BTreeSet};

use async_graphql_parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use ferry_core::schema::FieldType;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// The introspection query the connector sends (spec §4.1), on one line as it goes on the
/// wire: body `{"query": INTROSPECTION_QUERY}`, no variables, no operation name.
pub const INTROSPECTION_QUERY: &str = "{ __schema { queryType { name } mutationType { name } types { kind name description fields(includeDeprecated: false) { name description args { name description type { ...TypeRef } defaultValue } type { ...TypeRef } } inputFields { name description type { ...TypeRef } defaultValue } enumValues(includeDeprecated: false) { name description } possibleTypes { name } } } } fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }";

/// The deepest level of nested objects the builders descend to (spec §4.3–§4.6).
pub const MAX_DEPTH: usize = 6;

/// The longest field name the connector offers (longer ones are skipped, spec §4.2).
pub const MAX_NAME_LEN: usize = 40;

/// The kind of a named type (`__TypeKind` without the wrappers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    /// A scalar (built-in or custom).
    Scalar,
    /// An output object.
    Object,
    /// An interface.
    Interface,
    /// A union.
    Union,
    /// An enum.
    Enum,
    /// An input object.
    InputObject,
}

impl Kind {
    /// Object, interface, union or input object: the kinds mapped to `nested` (spec §4.2).
    pub fn is_nested(self) -> bool {
        matches!(
            self,
            Kind::Object | Kind::Interface | Kind::Union | Kind::InputObject
        )
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "SCALAR" => Kind::Scalar,
            "OBJECT" => Kind::Object,
            "INTERFACE" => Kind::Interface,
            "UNION" => Kind::Union,
            "ENUM" => Kind::Enum,
            "INPUT_OBJECT" => Kind::InputObject,
            _ => return None,
        })
    }
}

/// A type reference: a named type wrapped in any number of `NON_NULL` and `LIST` layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeRef {
    /// A named type.
    Named(String),
    /// `[inner]`.
    List(Box<TypeRef>),
    /// `inner!`.
    NonNull(Box<TypeRef>),
}

impl TypeRef {
    /// The type reference string used in variable definitions (spec §4.2): `PersonView`,
    /// `[PersonOrder!]`, `String!`.
    pub fn type_string(&self) -> String {
        match self {
            TypeRef::Named(n) => n.clone(),
            TypeRef::List(i) => format!("[{}]", i.type_string()),
            TypeRef::NonNull(i) => format!("{}!", i.type_string()),
        }
    }

    /// The innermost named type.
    pub fn name(&self) -> &str {
        match self {
            TypeRef::Named(n) => n,
            TypeRef::List(i) | TypeRef::NonNull(i) => i.name(),
        }
    }

    /// Whether any `LIST` layer is present.
    pub fn is_list(&self) -> bool {
        match self {
            TypeRef::Named(_) => false,
            TypeRef::List(_) => true,
            TypeRef::NonNull(i) => i.is_list(),
        }
    }

    /// Whether any `NON_NULL` layer is present, also one inside a list (spec §4.2:
    /// `[PersonOrder!]` is "required").
    pub fn has_non_null(&self) -> bool {
        match self {
            TypeRef::Named(_) => false,
            TypeRef::List(i) => i.has_non_null(),
            TypeRef::NonNull(_) => true,
        }
    }

    /// Parse an introspection `__Type` reference (`{kind, name, ofType}`). A missing or
    /// malformed inner type becomes `String` (spec §4.2).
    pub fn from_introspection(v: &Value) -> TypeRef {
        let inner = |v: &Value| match v.get("ofType") {
            Some(o) if o.is_object() => TypeRef::from_introspection(o),
            _ => TypeRef::Named("String".into()),
        };
        match v.get("kind").and_then(Value::as_str) {
            Some("NON_NULL") => TypeRef::NonNull(Box::new(inner(v))),
            Some("LIST") => TypeRef::List(Box::new(inner(v))),
            _ => match v.get("name").and_then(Value::as_str) {
                Some(n) if !n.is_empty() => TypeRef::Named(n.to_string()),
                _ => TypeRef::Named("String".into()),
            },
        }
    }

    fn from_sdl(t: &Type) -> TypeRef {
        let base = match &t.base {
            BaseType::Named(n) => TypeRef::Named(n.to_string()),
            BaseType::List(i) => TypeRef::List(Box::new(TypeRef::from_sdl(i))),
        };
        if t.nullable {
            base
        } else {
            TypeRef::NonNull(Box::new(base))
        }
    }
}

/// An argument or an input field (`__InputValue`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputValue {
    /// Name.
    pub name: String,
    /// Description, when the schema has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Type.
    #[serde(rename = "type")]
    pub ty: TypeRef,
    /// Default value as GraphQL literal text (`current_account`, `10`), when declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
}

impl InputValue {
    /// Required without a usable default: the type itself is `NON_NULL` and the default is
    /// blank (spec §4.2, "required-args detection"). A list of non-null items
    /// (`[PersonOrder!]`) may be omitted, as GraphQL says, so it is not required here.
    pub fn is_required_without_default(&self) -> bool {
        matches!(self.ty, TypeRef::NonNull(_))
            && self
                .default_value
                .as_deref()
                .is_none_or(|d| d.trim().is_empty())
    }
}

/// An output field (`__Field`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldDef {
    /// Name.
    pub name: String,
    /// Description, when the schema has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Arguments in schema order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<InputValue>,
    /// Type.
    #[serde(rename = "type")]
    pub ty: TypeRef,
}

impl FieldDef {
    /// The argument named `name`.
    pub fn arg(&self, name: &str) -> Option<&InputValue> {
        self.args.iter().find(|a| a.name == name)
    }

    /// The skip rule of spec §4.2: `pageInfo`, `totalCount`, names over 40 characters, and
    /// fields with a required argument without default are never offered nor selected.
    pub fn is_skipped(&self) -> bool {
        self.name == "pageInfo"
            || self.name == "totalCount"
            || self.name.chars().count() > MAX_NAME_LEN
            || self
                .args
                .iter()
                .any(InputValue::is_required_without_default)
    }
}

/// An enum value (`__EnumValue`) with its wire spelling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnumValue {
    /// The GraphQL name (`_12_5`).
    pub name: String,
    /// Description, when the schema has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The spelling Xurrent uses in JSON (`12.5`), from `@wireValue(value: "…")`, when it
    /// differs from the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<String>,
}

impl EnumValue {
    /// The spelling used in JSON values: the wire value, else the name.
    pub fn json_value(&self) -> &str {
        self.wire.as_deref().unwrap_or(&self.name)
    }
}

/// One named type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypeDef {
    /// Kind.
    pub kind: Kind,
    /// Name.
    pub name: String,
    /// Description, when the schema has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Fields of objects and interfaces, in schema order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDef>,
    /// Input fields of input objects, in schema order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_fields: Vec<InputValue>,
    /// Values of enums, in schema order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enum_values: Vec<EnumValue>,
    /// Members of unions, implementers of interfaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub possible_types: Vec<String>,
}

impl TypeDef {
    fn new(kind: Kind, name: &str) -> TypeDef {
        TypeDef {
            kind,
            name: name.to_string(),
            description: None,
            fields: Vec::new(),
            input_fields: Vec::new(),
            enum_values: Vec::new(),
            possible_types: Vec::new(),
        }
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The input field named `name`.
    pub fn input_field(&self, name: &str) -> Option<&InputValue> {
        self.input_fields.iter().find(|f| f.name == name)
    }

    /// The enum value whose name or wire spelling is `v`.
    pub fn enum_value(&self, v: &str) -> Option<&EnumValue> {
        self.enum_values
            .iter()
            .find(|e| e.name == v || e.wire.as_deref() == Some(v))
    }
}

/// A type reference resolved against the schema (spec §4.2 "unwrapping").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unwrapped<'a> {
    /// The innermost named type.
    pub name: &'a str,
    /// Its kind (`SCALAR` for names the schema does not declare).
    pub kind: Kind,
    /// Any `LIST` layer.
    pub list: bool,
    /// Any `NON_NULL` layer.
    pub required: bool,
}

const BUILTIN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];

/// A GraphQL schema, indexed by type name. Serializable, so that a connector can cache the
/// compact model instead of the introspection answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// Name of the query root type (`Query`).
    pub query_type: Option<String>,
    /// Name of the mutation root type (`Mutation`).
    pub mutation_type: Option<String>,
    /// Every named type except the introspection types (`__*`), in schema order.
    pub types: IndexMap<String, TypeDef>,
}

impl Schema {
    /// Build the model from an introspection result. Accepts the whole answer
    /// (`{"data": {"__schema": …}}`), `{"__schema": …}` or the `__schema` object itself.
    pub fn from_introspection(v: &Value) -> Result<Schema, Error> {
        let schema = v
            .get("data")
            .and_then(|d| d.get("__schema"))
            .or_else(|| v.get("__schema"))
            .unwrap_or(v);
        let types = schema
            .get("types")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::InvalidIntrospection("no __schema.types list".into()))?;
        let root_name = |key: &str| {
            schema
                .get(key)
                .and_then(|t| t.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let mut out = Schema {
            query_type: root_name("queryType"),
            mutation_type: root_name("mutationType"),
            types: IndexMap::with_capacity(types.len()),
        };
        for (i, t) in types.iter().enumerate() {
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::InvalidIntrospection(format!("types[{i}] has no name")))?;
            if name.starts_with("__") {
                continue;
            }
            let kind_s = t.get("kind").and_then(Value::as_str).unwrap_or_default();
            let kind = Kind::parse(kind_s).ok_or_else(|| {
                Error::InvalidIntrospection(format!("type {name} has unknown kind '{kind_s}'"))
            })?;
            let mut td = TypeDef::new(kind, name);
            td.description = text(t.get("description"));
            for f in list(t.get("fields")) {
                let Some(fname) = f.get("name").and_then(Value::as_str) else {
                    continue;
                };
                td.fields.push(FieldDef {
                    name: fname.to_string(),
                    description: text(f.get("description")),
                    args: list(f.get("args")).filter_map(input_value).collect(),
                    ty: TypeRef::from_introspection(f.get("type").unwrap_or(&Value::Null)),
                });
            }
            td.input_fields = list(t.get("inputFields")).filter_map(input_value).collect();
            td.enum_values = list(t.get("enumValues"))
                .filter_map(|e| {
                    Some(EnumValue {
                        name: e.get("name")?.as_str()?.to_string(),
                        description: text(e.get("description")),
                        wire: None,
                    })
                })
                .collect();
            td.possible_types = list(t.get("possibleTypes"))
                .filter_map(|p| Some(p.get("name")?.as_str()?.to_string()))
                .collect();
            out.types.insert(name.to_string(), td);
        }
        Ok(out)
    }

    /// Build the model from SDL (e.g. [`ferry_xurrent_schema::SDL`]). Enum values keep their
    /// `@wireValue(value: "…")` spelling; fields and values marked `@deprecated` are left out
    /// (as the introspection query asks with `includeDeprecated: false`).
    pub fn from_sdl(sdl: &str) -> Result<Schema, Error> {
        let doc = async_graphql_parser::parse_schema(sdl)
            .map_err(|e| Error::InvalidSdl(e.to_string()))?;
        let mut out = Schema {
            query_type: None,
            mutation_type: None,
            types: IndexMap::new(),
        };
        let mut implementers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let deprecated = |ds: &[async_graphql_parser::Positioned<
            async_graphql_parser::types::ConstDirective,
        >]| ds.iter().any(|d| d.node.name.node == "deprecated");
        let input_values = |ivs: &[async_graphql_parser::Positioned<
            async_graphql_parser::types::InputValueDefinition,
        >]| {
            ivs.iter()
                .filter(|iv| !deprecated(&iv.node.directives))
                .map(|iv| InputValue {
                    name: iv.node.name.node.to_string(),
                    description: iv.node.description.as_ref().map(|d| d.node.clone()),
                    ty: TypeRef::from_sdl(&iv.node.ty.node),
                    default_value: iv.node.default_value.as_ref().map(|d| d.node.to_string()),
                })
                .collect::<Vec<_>>()
        };
        for def in &doc.definitions {
            match def {
                TypeSystemDefinition::Schema(s) => {
                    if let Some(q) = &s.node.query {
                        out.query_type = Some(q.node.to_string());
                    }
                    if let Some(m) = &s.node.mutation {
                        out.mutation_type = Some(m.node.to_string());
                    }
                }
                TypeSystemDefinition::Type(t) => {
                    let t = &t.node;
                    let name = t.name.node.to_string();
                    let kind = match &t.kind {
                        TypeKind::Scalar => Kind::Scalar,
                        TypeKind::Object(_) => Kind::Object,
                        TypeKind::Interface(_) => Kind::Interface,
                        TypeKind::Union(_) => Kind::Union,
                        TypeKind::Enum(_) => Kind::Enum,
                        TypeKind::InputObject(_) => Kind::InputObject,
                    };
                    let td = out
                        .types
                        .entry(name.clone())
                        .or_insert_with(|| TypeDef::new(kind, &name));
                    if td.description.is_none() {
                        td.description = t.description.as_ref().map(|d| d.node.clone());
                    }
                    let fields = |fs: &[async_graphql_parser::Positioned<
                        async_graphql_parser::types::FieldDefinition,
                    >]| {
                        fs.iter()
                            .filter(|f| !deprecated(&f.node.directives))
                            .map(|f| FieldDef {
                                name: f.node.name.node.to_string(),
                                description: f.node.description.as_ref().map(|d| d.node.clone()),
                                args: input_values(&f.node.arguments),
                                ty: TypeRef::from_sdl(&f.node.ty.node),
                            })
                            .collect::<Vec<_>>()
                    };
                    match &t.kind {
                        TypeKind::Scalar => {}
                        TypeKind::Object(o) => {
                            td.fields.extend(fields(&o.fields));
                            for i in &o.implements {
                                implementers
                                    .entry(i.node.to_string())
                                    .or_default()
                                    .push(name.clone());
                            }
                        }
                        TypeKind::Interface(o) => td.fields.extend(fields(&o.fields)),
                        TypeKind::Union(u) => td
                            .possible_types
                            .extend(u.members.iter().map(|m| m.node.to_string())),
                        TypeKind::Enum(e) => {
                            td.enum_values.extend(
                                e.values
                                    .iter()
                                    .filter(|v| !deprecated(&v.node.directives))
                                    .map(|v| EnumValue {
                                        name: v.node.value.node.to_string(),
                                        description: v
                                            .node
                                            .description
                                            .as_ref()
                                            .map(|d| d.node.clone()),
                                        wire: wire_value(&v.node.directives),
                                    }),
                            );
                        }
                        TypeKind::InputObject(i) => td.input_fields.extend(input_values(&i.fields)),
                    }
                }
                TypeSystemDefinition::Directive(_) => {}
            }
        }
        for s in BUILTIN_SCALARS {
            out.types
                .entry(s.to_string())
                .or_insert_with(|| TypeDef::new(Kind::Scalar, s));
        }
        for (iface, objs) in implementers {
            if let Some(td) = out.types.get_mut(&iface) {
                if td.kind == Kind::Interface {
                    td.possible_types = objs;
                }
            }
        }
        if out.query_type.is_none() && out.types.contains_key("Query") {
            out.query_type = Some("Query".into());
        }
        if out.mutation_type.is_none() && out.types.contains_key("Mutation") {
            out.mutation_type = Some("Mutation".into());
        }
        Ok(out)
    }

    /// The schema that ships with Ferry ([`ferry_xurrent_schema::SDL`]), for offline checks.
    pub fn embedded() -> Result<Schema, Error> {
        Schema::from_sdl(ferry_xurrent_schema::SDL)
    }

    /// Attach wire spellings (`(enum, value) → wire`, see
    /// [`ferry_xurrent_schema::wire_values`]) to a model built from introspection, which does
    /// not carry applied directives.
    pub fn apply_wire_values(&mut self, wire: &ferry_xurrent_schema::WireValues) {
        for ((ty, value), w) in wire {
            if let Some(td) = self.types.get_mut(ty) {
                if let Some(ev) = td.enum_values.iter_mut().find(|e| &e.name == value) {
                    ev.wire = Some(w.clone());
                }
            }
        }
    }

    /// The type named `name`.
    pub fn get(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// The query root type.
    pub fn query_root(&self) -> Option<&TypeDef> {
        self.query_type.as_deref().and_then(|n| self.get(n))
    }

    /// The mutation root type.
    pub fn mutation_root(&self) -> Option<&TypeDef> {
        self.mutation_type.as_deref().and_then(|n| self.get(n))
    }

    /// Resolve a type reference (spec §4.2): the innermost name with its kind (`SCALAR` when
    /// the schema does not declare it), `list` and `required`.
    pub fn unwrap<'a>(&'a self, t: &'a TypeRef) -> Unwrapped<'a> {
        let name = t.name();
        Unwrapped {
            name,
            kind: self.get(name).map(|d| d.kind).unwrap_or(Kind::Scalar),
            list: t.is_list(),
            required: t.has_non_null(),
        }
    }

    /// The Ferry field type of an unwrapped type (spec §4.2 type mapping).
    pub fn field_type(&self, u: &Unwrapped<'_>) -> FieldType {
        match u.kind {
            Kind::Scalar => scalar_type(u.name),
            Kind::Enum => FieldType::String,
            _ => FieldType::Nested,
        }
    }

    /// Whether the type named `name` is a connection: it has a field `nodes` (spec §4.2).
    pub fn is_connection(&self, name: &str) -> bool {
        self.get(name).is_some_and(|t| {
            matches!(t.kind, Kind::Object | Kind::Interface) && t.field("nodes").is_some()
        })
    }

    /// The node type of a connection type: the unwrapped type of its `nodes` field.
    pub fn node_type(&self, connection: &str) -> Option<&str> {
        let t = self.get(connection)?;
        let nodes = t.field("nodes")?;
        Some(nodes.ty.name())
    }

    /// The fields of a type (spec §4.2): its own fields, or, when it has none (a union), the
    /// fields of its possible types deduplicated by name (first occurrence kept). An unknown
    /// type has no fields.
    pub fn fields_of(&self, name: &str) -> Vec<&FieldDef> {
        let Some(t) = self.get(name) else {
            return Vec::new();
        };
        if !t.fields.is_empty() || t.possible_types.is_empty() {
            return t.fields.iter().collect();
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for p in &t.possible_types {
            for f in self.get(p).map(|t| t.fields.as_slice()).unwrap_or_default() {
                if seen.insert(f.name.as_str()) {
                    out.push(f);
                }
            }
        }
        out
    }
}

/// The Ferry type of a scalar (spec §4.2): `Int` → integer, `Float` → float, `Boolean` →
/// boolean, `ISO8601DateTime`/`ISO8601Timestamp` → date_time, `ISO8601Date` → date, `JSON` →
/// any, anything else → string.
pub fn scalar_type(name: &str) -> FieldType {
    match name {
        "Int" => FieldType::Integer,
        "Float" => FieldType::Float,
        "Boolean" => FieldType::Boolean,
        "ISO8601DateTime" | "ISO8601Timestamp" => FieldType::DateTime,
        "ISO8601Date" => FieldType::Date,
        "JSON" => FieldType::Any,
        _ => FieldType::String,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

fn list(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

fn input_value(v: &Value) -> Option<InputValue> {
    Some(InputValue {
        name: v.get("name")?.as_str()?.to_string(),
        description: text(v.get("description")),
        ty: TypeRef::from_introspection(v.get("type").unwrap_or(&Value::Null)),
        default_value: v
            .get("defaultValue")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn wire_value(
    ds: &[async_graphql_parser::Positioned<async_graphql_parser::types::ConstDirective>],
) -> Option<String> {
    ds.iter()
        .filter(|d| d.node.name.node == "wireValue")
        .find_map(|d| match d.node.get_argument("value").map(|a| &a.node) {
            Some(async_graphql_value::ConstValue::String(s)) => Some(s.clone()),
            _ => None,
        })
}
