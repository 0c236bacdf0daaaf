//! A compact model of the SDL, used by the generic resolvers (field kinds, enum wire values,
//! input shapes) and to build the dynamic schema.

use std::collections::{HashMap, HashSet};

use async_graphql_parser::types::{
    BaseType, ConstDirective, Type, TypeKind as PKind, TypeSystemDefinition,
};
use async_graphql_value::ConstValue;
use indexmap::IndexMap;

use crate::EmulatorError;

/// Kind of a named type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Scalar,
    Object,
    Interface,
    Union,
    Enum,
    Input,
}

/// An argument or input field.
#[derive(Clone, Debug)]
pub(crate) struct InputDef {
    pub name: String,
    pub ty: Type,
    pub default: Option<ConstValue>,
}

/// An output field.
#[derive(Clone, Debug)]
pub(crate) struct FieldDef {
    pub name: String,
    pub ty: Type,
    pub args: Vec<InputDef>,
}

/// An enum value.
#[derive(Clone, Debug)]
pub(crate) struct EnumValueDef {
    pub name: String,
    pub wire: Option<String>,
}

/// A named type.
#[derive(Clone, Debug)]
pub(crate) struct TypeDef {
    pub name: String,
    pub kind: Kind,
    pub fields: IndexMap<String, FieldDef>,
    pub inputs: IndexMap<String, InputDef>,
    pub interfaces: Vec<String>,
    pub members: Vec<String>,
    pub values: Vec<EnumValueDef>,
    /// wire spelling → GraphQL name (only for values with `@wireValue`)
    pub wire_to_name: HashMap<String, String>,
    pub value_names: HashSet<String>,
}

/// A directive definition (e.g. `@wireValue`).
#[derive(Clone, Debug)]
pub(crate) struct DirectiveDef {
    pub name: String,
    pub description: Option<String>,
    /// Locations in introspection spelling (`ENUM_VALUE`).
    pub locations: Vec<String>,
    pub args: Vec<InputDef>,
    pub repeatable: bool,
}

/// `EnumValue` → `ENUM_VALUE`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The whole SDL.
#[derive(Debug)]
pub(crate) struct Model {
    pub types: IndexMap<String, TypeDef>,
    pub directives: Vec<DirectiveDef>,
    pub query: String,
    pub mutation: Option<String>,
}

/// Name of the innermost named type.
pub(crate) fn base_name(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(n) => n.as_str(),
        BaseType::List(inner) => base_name(inner),
    }
}

/// Whether the type is a list (at the outermost level, ignoring non-null).
pub(crate) fn is_list(ty: &Type) -> bool {
    matches!(ty.base, BaseType::List(_))
}

fn wire_value(directives: &[async_graphql_parser::Positioned<ConstDirective>]) -> Option<String> {
    directives.iter().find_map(|d| {
        if d.node.name.node.as_str() != "wireValue" {
            return None;
        }
        match d.node.get_argument("value").map(|v| &v.node) {
            Some(ConstValue::String(s)) => Some(s.clone()),
            _ => None,
        }
    })
}

impl Model {
    /// Parse SDL text.
    pub(crate) fn parse(sdl: &str) -> Result<Model, EmulatorError> {
        let doc = async_graphql_parser::parse_schema(sdl)
            .map_err(|e| EmulatorError::Schema(e.to_string()))?;
        let mut types = IndexMap::new();
        let mut directives = Vec::new();
        let mut query = "Query".to_string();
        let mut mutation = None;
        for def in doc.definitions {
            match def {
                TypeSystemDefinition::Schema(s) => {
                    if let Some(q) = s.node.query {
                        query = q.node.to_string();
                    }
                    mutation = s.node.mutation.map(|m| m.node.to_string());
                }
                TypeSystemDefinition::Directive(d) => {
                    let d = d.node;
                    directives.push(DirectiveDef {
                        name: d.name.node.to_string(),
                        description: d.description.map(|x| x.node),
                        locations: d
                            .locations
                            .iter()
                            .map(|l| screaming_snake(&format!("{:?}", l.node)))
                            .collect(),
                        args: d
                            .arguments
                            .into_iter()
                            .map(|a| InputDef {
                                name: a.node.name.node.to_string(),
                                ty: a.node.ty.node,
                                default: a.node.default_value.map(|d| d.node),
                            })
                            .collect(),
                        repeatable: d.is_repeatable,
                    });
                }
                TypeSystemDefinition::Type(t) => {
                    let t = t.node;
                    let name = t.name.node.to_string();
                    let mut td = TypeDef {
                        name: name.clone(),
                        kind: Kind::Scalar,
                        fields: IndexMap::new(),
                        inputs: IndexMap::new(),
                        interfaces: Vec::new(),
                        members: Vec::new(),
                        values: Vec::new(),
                        wire_to_name: HashMap::new(),
                        value_names: HashSet::new(),
                    };
                    let conv_field = |f: async_graphql_parser::types::FieldDefinition| FieldDef {
                        name: f.name.node.to_string(),
                        ty: f.ty.node,
                        args: f
                            .arguments
                            .into_iter()
                            .map(|a| InputDef {
                                name: a.node.name.node.to_string(),
                                ty: a.node.ty.node,
                                default: a.node.default_value.map(|d| d.node),
                            })
                            .collect(),
                    };
                    match t.kind {
                        PKind::Scalar => td.kind = Kind::Scalar,
                        PKind::Object(o) => {
                            td.kind = Kind::Object;
                            td.interfaces =
                                o.implements.iter().map(|n| n.node.to_string()).collect();
                            for f in o.fields {
                                let f = conv_field(f.node);
                                td.fields.insert(f.name.clone(), f);
                            }
                        }
                        PKind::Interface(o) => {
                            td.kind = Kind::Interface;
                            td.interfaces =
                                o.implements.iter().map(|n| n.node.to_string()).collect();
                            for f in o.fields {
                                let f = conv_field(f.node);
                                td.fields.insert(f.name.clone(), f);
                            }
                        }
                        PKind::Union(u) => {
                            td.kind = Kind::Union;
                            td.members = u.members.iter().map(|n| n.node.to_string()).collect();
                        }
                        PKind::Enum(e) => {
                            td.kind = Kind::Enum;
                            for v in e.values {
                                let vname = v.node.value.node.to_string();
                                let wire = wire_value(&v.node.directives);
                                if let Some(w) = &wire {
                                    td.wire_to_name.insert(w.clone(), vname.clone());
                                }
                                td.value_names.insert(vname.clone());
                                td.values.push(EnumValueDef { name: vname, wire });
                            }
                        }
                        PKind::InputObject(i) => {
                            td.kind = Kind::Input;
                            for f in i.fields {
                                let d = InputDef {
                                    name: f.node.name.node.to_string(),
                                    ty: f.node.ty.node,
                                    default: f.node.default_value.map(|d| d.node),
                                };
                                td.inputs.insert(d.name.clone(), d);
                            }
                        }
                    }
                    types.insert(name, td);
                }
            }
        }
        if !types.contains_key(&query) {
            return Err(EmulatorError::Schema(format!(
                "query type '{query}' not defined"
            )));
        }
        Ok(Model {
            types,
            directives,
            query,
            mutation,
        })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    pub(crate) fn kind(&self, name: &str) -> Option<Kind> {
        self.types.get(name).map(|t| t.kind)
    }

    /// Object types that implement `Node` (the ones records can have).
    pub(crate) fn is_record_type(&self, name: &str) -> bool {
        self.types
            .get(name)
            .is_some_and(|t| t.kind == Kind::Object && t.fields.contains_key("id"))
    }

    /// Whether a type is a relay connection (`nodes`, `edges`, `pageInfo`, `totalCount`).
    pub(crate) fn is_connection(&self, name: &str) -> bool {
        self.types.get(name).is_some_and(|t| {
            t.kind == Kind::Object
                && t.fields.contains_key("pageInfo")
                && t.fields.contains_key("nodes")
                && t.fields.contains_key("edges")
        })
    }

    /// Item type of a connection (the type of its `nodes`).
    pub(crate) fn connection_item(&self, name: &str) -> Option<&str> {
        let t = self.types.get(name)?;
        t.fields.get("nodes").map(|f| base_name(&f.ty))
    }

    /// The GraphQL name of an enum value given either spelling; `None` if not a value.
    pub(crate) fn enum_name<'a>(&'a self, enum_type: &str, value: &'a str) -> Option<&'a str> {
        let t = self.types.get(enum_type)?;
        if t.value_names.contains(value) {
            return Some(value);
        }
        t.wire_to_name.get(value).map(String::as_str)
    }
}
