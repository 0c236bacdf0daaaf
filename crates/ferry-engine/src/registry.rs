//! The one place where every connector is registered.
//!
//! Adding a connector means writing one module under `connectors/` (or a crate of its own)
//! with a `register(&mut Registry)` function and adding one line to [`Registry::builtin`] (or,
//! for a connector crate, one call in the binary that builds the registry it hands to
//! [`crate::Engine::new`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::action::Action;
use crate::connector::Connector;
use crate::trigger::Trigger;

/// All known connectors, actions and triggers, by name.
#[derive(Default, Clone)]
pub struct Registry {
    actions: BTreeMap<&'static str, Arc<dyn Action>>,
    triggers: BTreeMap<&'static str, Arc<dyn Trigger>>,
    connectors: BTreeMap<&'static str, Arc<dyn Connector>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The registry with every built-in connector.
    pub fn builtin() -> Registry {
        use crate::connectors::*;
        let mut r = Registry::new();
        flow::register(&mut r);
        debug::register(&mut r);
        http::register(&mut r);
        json_endpoint::register(&mut r);
        runbook_variables::register(&mut r);
        scheduler::register(&mut r);
        r
    }

    /// Add everything `other` registers (e.g. a connector crate's registry); entries of
    /// `other` replace same-named ones.
    pub fn merge(&mut self, other: Registry) {
        self.actions.extend(other.actions);
        self.triggers.extend(other.triggers);
        self.connectors.extend(other.connectors);
    }

    /// Register a connector: a [`crate::ConnectorSpec`] for one without hooks, or a type
    /// implementing [`Connector`].
    pub fn connector(&mut self, connector: impl Connector) {
        let name = connector.spec().name;
        self.connectors.insert(name, Arc::new(connector));
    }

    /// Look up a connector.
    pub fn get_connector(&self, name: &str) -> Option<Arc<dyn Connector>> {
        self.connectors.get(name).cloned()
    }

    /// Register an action under its spec name.
    pub fn action(&mut self, action: impl Action) {
        let name = action.spec().name;
        self.actions.insert(name, Arc::new(action));
    }

    /// Register a trigger under its spec name.
    pub fn trigger(&mut self, trigger: impl Trigger) {
        let name = trigger.spec().name;
        self.triggers.insert(name, Arc::new(trigger));
    }

    /// Look up an action.
    pub fn get_action(&self, name: &str) -> Option<Arc<dyn Action>> {
        self.actions.get(name).cloned()
    }

    /// Look up a trigger by `<connector>.<type>`.
    pub fn get_trigger(&self, name: &str) -> Option<Arc<dyn Trigger>> {
        self.triggers.get(name).cloned()
    }

    /// Whether a connector is known.
    pub fn has_connector(&self, name: &str) -> bool {
        self.connectors.contains_key(name)
    }

    /// Names of all actions.
    pub fn action_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.actions.keys().copied()
    }

    /// Names of all triggers.
    pub fn trigger_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.triggers.keys().copied()
    }

    /// All connectors with their descriptions.
    pub fn connectors(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.connectors
            .iter()
            .map(|(k, v)| (*k, v.spec().description))
    }
}
