//! Event: something that happened to an object (scheduled, pulled, killed, scaled), recorded by
//! the scheduler, controllers and agents, deduplicated with a count.

use crate::meta::ObjectMeta;
use crate::service::ObjectReference;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub involved_object: ObjectReference,
    /// A short CamelCase cause (`Scheduled`, `FailedScheduling`, `ScalingReplicaSet`).
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type")]
    pub type_: EventType,
    #[serde(default)]
    pub source: EventSource,
    /// How many times this (object, reason, message) happened; repeats bump it.
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<DateTime<Utc>>,
}

fn one() -> u32 {
    1
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventType {
    #[default]
    Normal,
    Warning,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSource {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub component: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
}
