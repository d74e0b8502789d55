//! How stored values read back as the core's types, for every dialect: a
//! value that does not parse is corruption, named without personal data.

use std::collections::BTreeMap;

use admit_core::{Email, EventId, OperatorRole, Role, Timestamp, WorkspaceId};

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

pub(crate) fn parse_operator_role(raw: &str) -> Result<OperatorRole, StoreError> {
    OperatorRole::parse(raw).ok_or_else(|| corrupt(format_args!("unknown operator role {raw:?}")))
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

/// A `LIKE` pattern matching any text that contains `part`, its `%`, `_`
/// and `\` taken literally (the query says `ESCAPE '\'`).
pub(crate) fn contains_pattern(part: &str) -> String {
    let mut pattern = String::with_capacity(part.len() + 2);
    pattern.push('%');
    for c in part.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contains_pattern_takes_wildcards_literally() {
        assert_eq!(contains_pattern("acme"), "%acme%");
        assert_eq!(contains_pattern("50%_off\\"), r"%50\%\_off\\%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
