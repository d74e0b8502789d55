//! What a call to Stripe can end in. No variant carries the API key, a
//! request URL (a query may hold an email address) or a request body.

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Stripe answered with an error status: its `{"error": {…}}` body when
    /// it sent one. A 5xx ends here once the retries are spent.
    #[error("Stripe answered HTTP {status} ({}): {message}", .code.as_deref().unwrap_or("no code"))]
    Api {
        status: u16,
        /// Stripe's `error.code`, e.g. `resource_missing`.
        code: Option<String>,
        message: String,
        /// Stripe's `error.type`, e.g. `invalid_request_error`.
        kind: Option<String>,
    },
    /// Still answered 429 after every retry.
    #[error("Stripe kept rate-limiting the request; gave up after {retries} retries")]
    RateLimited { retries: u32 },
    /// No usable answer: connection refused or reset, timeout, TLS failure.
    /// The URL is stripped from the cause before it is kept.
    #[error("could not complete the request to Stripe")]
    Transport(#[source] reqwest::Error),
    /// A success status with a body that is not the JSON expected.
    #[error("Stripe's response is not the JSON expected")]
    Decode(#[source] serde_json::Error),
    #[error(
        "the Stripe client is not configured: it needs a non-empty API key, an http(s) base URL \
         and a request rate above 0"
    )]
    NotConfigured,
    /// Well-formed JSON that breaks a promise of the API, e.g. a list page
    /// that says `has_more` but whose last item has no id to continue from.
    #[error("Stripe's response is not what the API promises: {0}")]
    Unexpected(&'static str),
    /// A list ran past the client's page bound; the caller should narrow it.
    #[error("a Stripe list ran past {pages} pages; narrow the query")]
    TooManyPages { pages: u32 },
}

impl StripeError {
    /// A 404: the object does not exist (or not in this mode, test vs live).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status: 404, .. })
    }

    /// Reads Stripe's error body. A body that is not one (a proxy's HTML
    /// page, say) is not echoed: it could be anything.
    pub(crate) fn from_response(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Body {
            error: Detail,
        }
        #[derive(Deserialize)]
        struct Detail {
            #[serde(rename = "type")]
            kind: Option<String>,
            code: Option<String>,
            message: Option<String>,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(Body { error }) => Self::Api {
                status,
                code: error.code,
                message: error
                    .message
                    .unwrap_or_else(|| "(Stripe sent no message)".to_owned()),
                kind: error.kind,
            },
            Err(_) => Self::Api {
                status,
                code: None,
                message: "the response has no Stripe error body".to_owned(),
                kind: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stripes_error_body() {
        let error = StripeError::from_response(
            400,
            br#"{"error":{"type":"invalid_request_error","code":"parameter_missing","message":"Missing required param: line_items.","param":"line_items"}}"#,
        );
        let StripeError::Api {
            status,
            code,
            message,
            kind,
        } = &error
        else {
            panic!("expected an Api error, got {error:?}");
        };
        assert_eq!(*status, 400);
        assert_eq!(code.as_deref(), Some("parameter_missing"));
        assert_eq!(message, "Missing required param: line_items.");
        assert_eq!(kind.as_deref(), Some("invalid_request_error"));
        assert_eq!(
            error.to_string(),
            "Stripe answered HTTP 400 (parameter_missing): Missing required param: line_items."
        );
    }

    #[test]
    fn does_not_echo_a_body_that_is_not_a_stripe_error() {
        let error = StripeError::from_response(502, b"<html>bad gateway buyer@example.com</html>");
        assert!(!error.to_string().contains("buyer@example.com"));
        assert!(matches!(
            error,
            StripeError::Api {
                status: 502,
                code: None,
                ..
            }
        ));
    }
}
