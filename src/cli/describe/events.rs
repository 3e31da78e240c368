//! The `Events:` table every description ends with, and the underlined tables kubectl uses for
//! it and for workload conditions.

use super::Doc;
use crate::cli::render::age;
use chrono::{DateTime, Utc};
use edge_api::event::Event;
use edge_api::meta::Condition;

/// A table with a `----` rule under each header, indented under a heading.
pub(super) fn underlined(d: &mut Doc, indent: usize, headers: &[&str], rows: &[Vec<String>]) {
    let rule: Vec<String> = headers
        .iter()
        .map(|h| "-".repeat(h.chars().count()))
        .collect();
    let mut all = Vec::with_capacity(rows.len() + 1);
    all.push(rule);
    all.extend(rows.iter().cloned());
    d.table(indent, headers, &all);
}

/// kubectl's AGE of an event: `12s`, or `3m (x5 over 10m)` for a repeated one.
pub fn event_age(e: &Event, now: DateTime<Utc>) -> String {
    let first = e.first_timestamp.or(e.last_timestamp);
    if e.count > 1 {
        format!(
            "{} (x{} over {})",
            age(e.last_timestamp.or(first), now),
            e.count,
            age(first, now)
        )
    } else {
        age(first, now)
    }
}

/// `component, host` (or the component alone), as kubectl's From column.
pub fn event_source(e: &Event) -> String {
    match (e.source.component.as_str(), e.source.host.as_str()) {
        (c, "") => c.to_string(),
        ("", h) => h.to_string(),
        (c, h) => format!("{c}, {h}"),
    }
}

/// The events whose involvedObject is the object with `uid`, oldest first.
pub fn events_about<'a>(uid: &str, events: &'a [Event]) -> Vec<&'a Event> {
    let mut mine: Vec<&Event> = events
        .iter()
        .filter(|e| !uid.is_empty() && e.involved_object.uid == uid)
        .collect();
    mine.sort_by_key(|e| {
        (
            e.last_timestamp.or(e.first_timestamp),
            e.metadata.name.clone(),
        )
    });
    mine
}

/// `Events:` and the table (Type, Reason, Age, From, Message), or `Events:  <none>`.
pub(super) fn events(d: &mut Doc, events: &[&Event], now: DateTime<Utc>) {
    if events.is_empty() {
        d.pair(0, "Events", "<none>");
        return;
    }
    d.text(0, "Events:");
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                format!("{:?}", e.type_),
                e.reason.clone(),
                event_age(e, now),
                event_source(e),
                e.message.clone(),
            ]
        })
        .collect();
    underlined(d, 2, &["Type", "Reason", "Age", "From", "Message"], &rows);
}

/// Workload conditions as kubectl shows them: Type, Status, Reason, and the Message when any
/// condition has one (a failed rollout says why there).
pub(super) fn workload_conditions(d: &mut Doc, conds: &[Condition]) {
    if conds.is_empty() {
        return;
    }
    d.text(0, "Conditions:");
    let with_message = conds.iter().any(|c| !c.message.is_empty());
    let mut headers = vec!["Type", "Status", "Reason"];
    if with_message {
        headers.push("Message");
    }
    let rows: Vec<Vec<String>> = conds
        .iter()
        .map(|c| {
            let mut r = vec![c.type_.clone(), c.status.clone(), c.reason.clone()];
            if with_message {
                r.push(c.message.clone());
            }
            r
        })
        .collect();
    underlined(d, 2, &headers, &rows);
}

/// Renders an events table alone (for tests and callers outside `describe`).
pub fn events_text(events: &[&Event], now: DateTime<Utc>) -> String {
    let mut d = Doc::default();
    self::events(&mut d, events, now);
    d.render()
}
