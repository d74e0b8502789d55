//! How stored values read back as the core's types, for every dialect: a
//! value that does not parse is corruption, named without personal data.

use std::collections::BTreeMap;

use admit_core::{Email, EventId, Role, Timestamp, WorkspaceId};

use crate::StoreError;

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn parse_event_id(raw: String) -> Result<EventId, StoreError> {
    EventId::parse(raw).map_err(corrupt)
}

pub(crate) fn parse_workspace(raw: String) -> Result<WorkspaceId, StoreError> {
    WorkspaceId::parse(raw).map_err(corrupt)
}

pub(crate) fn parse_role(raw: &str) -> Result<Role, StoreError> {
    // The role is one of three words, never personal data: safe in the message.
    Role::parse(raw).ok_or_else(|| corrupt(format_args!("unknown member role {raw:?}")))
}

pub(crate) fn parse_email(raw: &str) -> Result<Email, StoreError> {
    // `EmailError` describes the defect without repeating the address.
    Email::parse(raw).map_err(|e| corrupt(format_args!("stored member email: {e}")))
}

pub(crate) fn ts(raw: Option<i64>) -> Option<Timestamp> {
    raw.map(Timestamp::from_unix)
}

/// The audit subject of a member change.
pub(crate) fn member_subject(email: &Email) -> String {
    format!("member:{}", email.as_str())
}

pub(crate) fn role_json(role: Role) -> serde_json::Value {
    serde_json::json!({ "role": role.as_str() })
}

/// A string map (metadata, headers) as the JSON text it is stored as.
pub(crate) fn json_text(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| unreachable!("a string map always serialises"))
}
