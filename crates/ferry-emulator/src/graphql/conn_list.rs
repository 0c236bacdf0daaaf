//! The ordered record list behind a root connection (`people(filter:, order:, view:)`), and
//! the cache that makes paging through it cheap.
//!
//! A client pages by asking for the same connection again with the previous page's end
//! cursor, which is an offset into the list. Building the list means collecting every record
//! of the account of the item types, applying view and filter, and sorting: time proportional
//! to the account's size, for every page. The cache keeps the lists already built, keyed by
//! everything that decides a list's content and order ([`ConnQuery`]), and tagged with the
//! record store's mutation generation. Any write to any record bumps the generation and
//! empties the cache, so every page is answered as if its list were rebuilt for it: a record
//! created, updated or deleted between two pages is seen by the next page exactly as before
//! the cache existed.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value as Json;

use super::resolve::{derived_value, matches_filter_with, records_of, sort_records};
use crate::{Emulator, Record};

/// The shared, immutable list of a connection: filtered and ordered.
pub(crate) type ConnList = Arc<Vec<Arc<Record>>>;

/// Everything that decides which records a root connection lists, and in what order.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnQuery {
    pub account: String,
    /// Concrete record types that can be items of the connection.
    pub types: Vec<String>,
    /// The `view` argument (enum name), if given.
    pub view: Option<String>,
    /// The requesting person: views such as `assigned_to_me` depend on it.
    pub person_id: Option<String>,
    /// The `filter` argument, if it is an object.
    pub filter: Option<serde_json::Map<String, Json>>,
    /// The `order` argument as `(field, descending)` entries.
    pub order: Vec<(String, bool)>,
}

impl ConnQuery {
    /// Cache key: the `Debug` form quotes and escapes every string, so distinct queries
    /// cannot collide; the filter is keyed by its JSON text.
    fn key(&self) -> String {
        let filter = self
            .filter
            .as_ref()
            .map(|f| Json::Object(f.clone()).to_string());
        format!(
            "{:?}",
            (
                &self.account,
                &self.types,
                &self.view,
                &self.person_id,
                filter,
                &self.order
            )
        )
    }
}

/// Build the list of a connection from the record store (no cache).
pub(crate) fn build_list(emu: &Emulator, q: &ConnQuery) -> Vec<Arc<Record>> {
    let mut items = records_of(emu, &q.account, &q.types);
    if let Some(view) = &q.view {
        apply_view(emu, &q.account, q.person_id.as_deref(), view, &mut items);
    }
    if let Some(f) = &q.filter {
        let derive = |r: &Record, field: &str| derived_value(emu, r, field);
        items.retain(|r| matches_filter_with(r, f, &derive));
    }
    sort_records(emu, &mut items, &q.order);
    items
}

/// Keep the records a `view` shows (`assigned_to_me`, `trash`, ...); unknown views show all.
fn apply_view(
    emu: &Emulator,
    account: &str,
    person_id: Option<&str>,
    view: &str,
    items: &mut Vec<Arc<Record>>,
) {
    let me = person_id.unwrap_or_default();
    let is_me = |r: &Record, key: &str| r.get(key).and_then(Json::as_str) == Some(me);
    match view {
        "trash" | "archive" => items.clear(),
        "assigned_to_me" => items.retain(|r| is_me(r, "member")),
        "created_by_me" => items.retain(|r| is_me(r, "createdBy")),
        "managed_by_me" => items.retain(|r| is_me(r, "manager")),
        "coordinated_by_me" => items.retain(|r| is_me(r, "coordinator")),
        "requested_by_or_for_me" => {
            items.retain(|r| is_me(r, "requestedBy") || is_me(r, "requestedFor"))
        }
        "assigned_to_my_team" => {
            let mine = my_teams(emu, account, me);
            items.retain(|r| {
                r.get("team")
                    .and_then(Json::as_str)
                    .is_some_and(|t| mine.iter().any(|m| m == t))
            })
        }
        _ => {}
    }
}

/// Teams of a person: the person's `teams` list, plus teams whose `members` list the person.
fn my_teams(emu: &Emulator, account: &str, person: &str) -> Vec<String> {
    let mut teams: Vec<String> = emu
        .records
        .get_arc(person)
        .and_then(|p| p.get("teams").and_then(Json::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for t in emu.records.list_arc(account, "Team") {
        let member = t
            .get("members")
            .and_then(Json::as_array)
            .is_some_and(|m| m.iter().any(|v| v.as_str() == Some(person)));
        if member {
            if let Some(id) = t.get("id").and_then(Json::as_str) {
                teams.push(id.to_string());
            }
        }
    }
    teams
}

/// At most this many lists are kept; when full, the cache starts over (a client pages through
/// one or a few connections at a time, so this bound is rarely reached).
const MAX_LISTS: usize = 32;

#[derive(Default)]
struct CacheInner {
    /// The store generation every list in `lists` was built at.
    generation: u64,
    lists: HashMap<String, ConnList>,
}

/// Connection lists of one emulator, valid for one record store generation.
#[derive(Default)]
pub(crate) struct ConnCache {
    inner: parking_lot::Mutex<CacheInner>,
}

impl ConnCache {
    /// The list of `q`: from the cache when no record changed since it was built, else built
    /// now (and kept unless a write happened meanwhile).
    pub(crate) fn list(&self, emu: &Emulator, q: &ConnQuery) -> ConnList {
        let key = q.key();
        // Read before building: a write that completes while the list is built changes the
        // generation, and the list is then not kept.
        let generation = emu.records.generation();
        {
            let mut inner = self.inner.lock();
            if inner.generation != generation {
                inner.lists.clear();
                inner.generation = generation;
            }
            if let Some(list) = inner.lists.get(&key) {
                return list.clone();
            }
        }
        let list: ConnList = Arc::new(build_list(emu, q));
        let mut inner = self.inner.lock();
        if inner.generation == generation && emu.records.generation() == generation {
            if inner.lists.len() >= MAX_LISTS {
                inner.lists.clear();
            }
            inner.lists.insert(key, list.clone());
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn emulator() -> Arc<Emulator> {
        crate::build(crate::EmulatorConfig::default())
            .await
            .expect("emulator builds")
    }

    fn seed_people(emu: &Emulator, n: usize) {
        for i in 0..n {
            let fields = json!({
                "name": format!("Person {:03}", (i * 37) % n),
                "jobTitle": if i % 3 == 0 { "engineer" } else { "analyst" },
            });
            emu.create_record(
                &emu.config.account,
                "Person",
                fields.as_object().unwrap().clone(),
                None,
            );
        }
    }

    fn ids(list: &[Arc<Record>]) -> Vec<String> {
        list.iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn queries(account: &str) -> Vec<ConnQuery> {
        let base = ConnQuery {
            account: account.to_string(),
            types: vec!["Person".to_string()],
            ..Default::default()
        };
        let filter = json!({ "jobTitle": { "values": ["engineer"] } });
        vec![
            base.clone(),
            ConnQuery {
                order: vec![("name".into(), true)],
                ..base.clone()
            },
            ConnQuery {
                filter: filter.as_object().cloned(),
                order: vec![("name".into(), false)],
                ..base.clone()
            },
            ConnQuery {
                view: Some("trash".into()),
                ..base
            },
        ]
    }

    #[tokio::test]
    async fn cached_lists_equal_built_lists() {
        let emu = emulator().await;
        let account = emu.config.account.clone();
        seed_people(&emu, 150);
        let cache = ConnCache::default();
        for q in queries(&account) {
            let built = build_list(&emu, &q);
            let first = cache.list(&emu, &q);
            let again = cache.list(&emu, &q);
            assert_eq!(ids(&first), ids(&built), "{q:?}");
            assert!(
                Arc::ptr_eq(&first, &again),
                "second call is served from the cache"
            );
        }
        // The queries are distinct lists (order and filter are honoured, not shared).
        let lists: Vec<_> = queries(&account)
            .iter()
            .map(|q| ids(&cache.list(&emu, q)))
            .collect();
        assert_ne!(lists[0], lists[1]);
        assert!(lists[2].len() < lists[0].len() && !lists[2].is_empty());
        assert!(lists[3].is_empty());
    }

    #[tokio::test]
    async fn every_write_invalidates_the_cached_lists() {
        let emu = emulator().await;
        let account = emu.config.account.clone();
        seed_people(&emu, 40);
        let cache = ConnCache::default();
        let by_name = &queries(&account)[2];
        let before = cache.list(&emu, by_name);

        // Create: a new engineer sorting first is in the next list.
        let created = emu.create_record(
            &account,
            "Person",
            json!({ "name": "AAA first", "jobTitle": "engineer" })
                .as_object()
                .unwrap()
                .clone(),
            None,
        );
        let after_create = cache.list(&emu, by_name);
        assert_eq!(after_create[0]["id"], created["id"]);
        assert_eq!(after_create.len(), before.len() + 1);

        // Update: a changed sort key moves the record; a changed filter field drops it.
        let id = created["id"].as_str().unwrap().to_string();
        let patch = json!({ "name": "ZZZ last" }).as_object().unwrap().clone();
        emu.update_record(&id, patch, None);
        let after_update = cache.list(&emu, by_name);
        assert_eq!(after_update.last().unwrap()["id"], created["id"]);
        let patch = json!({ "jobTitle": "analyst" })
            .as_object()
            .unwrap()
            .clone();
        emu.update_record(&id, patch, None);
        assert_eq!(ids(&cache.list(&emu, by_name)), ids(&before));

        // Delete: the record is gone from the next list.
        let first_id = before[0]["id"].as_str().unwrap().to_string();
        emu.delete_record(&first_id, None);
        let after_delete = cache.list(&emu, by_name);
        assert_eq!(ids(&after_delete), ids(&before)[1..].to_vec());
        for q in queries(&account) {
            assert_eq!(ids(&cache.list(&emu, &q)), ids(&build_list(&emu, &q)));
        }
    }
}
