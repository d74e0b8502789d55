//! Typed identifiers. Raw strings stop at the boundary: once parsed, an id
//! cannot be mixed up with an id of another kind.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} must be at most {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} must start with `{prefix}`")]
    WrongPrefix {
        kind: &'static str,
        prefix: &'static str,
    },
    #[error("{kind} may only contain ASCII letters, digits, `_` and `-`")]
    BadCharacter { kind: &'static str },
}

/// Stripe ids are short ASCII tokens; anything longer is not one of theirs.
const MAX_ID_LEN: usize = 255;

fn check(raw: &str, kind: &'static str, prefix: Option<&'static str>) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            max: MAX_ID_LEN,
        });
    }
    if let Some(prefix) = prefix
        && !raw.starts_with(prefix)
    {
        return Err(IdError::WrongPrefix { kind, prefix });
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(IdError::BadCharacter { kind });
    }
    Ok(())
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $prefix:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                check(&raw, $kind, $prefix)?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, IdError> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

typed_id!(
    /// A Stripe event id (`evt_…`): the idempotency key of the inbox.
    EventId, "event id", Some("evt_")
);
typed_id!(
    /// A workspace id: `ws_…` when admit made it, or the application's own id.
    WorkspaceId, "workspace id", None
);
typed_id!(
    /// A Stripe customer id (`cus_…`).
    CustomerId, "customer id", Some("cus_")
);
typed_id!(
    /// A Stripe subscription id (`sub_…`).
    SubscriptionId, "subscription id", Some("sub_")
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_need_their_prefix() {
        assert!(EventId::parse("evt_1SiAbEB7WZ01zgkWc0Cu5tCr").is_ok());
        assert_eq!(
            EventId::parse("cus_123"),
            Err(IdError::WrongPrefix {
                kind: "event id",
                prefix: "evt_"
            })
        );
        assert_eq!(EventId::parse(""), Err(IdError::Empty { kind: "event id" }));
    }

    #[test]
    fn ids_refuse_odd_characters_and_length() {
        assert!(matches!(
            WorkspaceId::parse("ws_1; drop table"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            WorkspaceId::parse("w".repeat(256)),
            Err(IdError::TooLong { .. })
        ));
        assert!(WorkspaceId::parse("acme-rockets_01").is_ok());
    }

    #[test]
    fn serde_round_trip_validates() {
        let id: CustomerId = serde_json_free_parse("cus_AcmeDana0001");
        assert_eq!(id.as_str(), "cus_AcmeDana0001");
        assert!(CustomerId::try_from("sub_x".to_owned()).is_err());
    }

    fn serde_json_free_parse(raw: &str) -> CustomerId {
        CustomerId::try_from(raw.to_owned()).expect("valid id")
    }
}
