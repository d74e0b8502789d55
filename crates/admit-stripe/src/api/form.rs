//! Request parameters in the form encoding Stripe reads: flat `key=value`
//! pairs whose keys spell nesting with brackets (`metadata[workspace_id]`,
//! `line_items[0][price]`, `expand[]`), in the order they were added.

/// An ordered list of form fields, sent as a POST body or a GET query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    pub fn new() -> Self {
        Self::default()
    }

    /// `key` is sent as given, so it may already be nested: `"metadata[plan]"`.
    #[must_use]
    pub fn field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.push(key, value);
        self
    }

    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    /// `["subscription_data", "metadata", "workspace_id"]` becomes
    /// `subscription_data[metadata][workspace_id]`.
    #[must_use]
    pub fn nested(self, path: &[&str], value: impl Into<String>) -> Self {
        self.field(Self::key(path), value)
    }

    /// One `prefix[key]=value` field per entry: a metadata hash, for example
    /// `map(&["subscription_data", "metadata"], &[("workspace_id", "ws_1")])`.
    #[must_use]
    pub fn map(mut self, prefix: &[&str], entries: &[(&str, &str)]) -> Self {
        let prefix = Self::key(prefix);
        for (key, value) in entries {
            self.push(format!("{prefix}[{key}]"), *value);
        }
        self
    }

    /// `metadata[key]=value` for each entry.
    #[must_use]
    pub fn metadata(self, entries: &[(&str, &str)]) -> Self {
        self.map(&["metadata"], entries)
    }

    /// `line_items[index][price]` and `line_items[index][quantity]`. The index
    /// is explicit because Stripe reads the items in index order, not in the
    /// order the fields arrive.
    #[must_use]
    pub fn line_item(self, index: usize, price: &str, quantity: u32) -> Self {
        let index = index.to_string();
        self.nested(&["line_items", &index, "price"], price)
            .nested(&["line_items", &index, "quantity"], quantity.to_string())
    }

    /// `expand[]=path`: asks Stripe to inline the object `path` refers to.
    #[must_use]
    pub fn expand(self, path: &str) -> Self {
        self.field("expand[]", path)
    }

    /// The bracketed key for a path: `["a", "b", "c"]` → `a[b][c]`.
    pub fn key(path: &[&str]) -> String {
        let mut key = String::new();
        for (i, part) in path.iter().enumerate() {
            if i == 0 {
                key.push_str(part);
            } else {
                key.push('[');
                key.push_str(part);
                key.push(']');
            }
        }
        key
    }

    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// The first value sent under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `application/x-www-form-urlencoded`. Brackets in keys stay literal, as
    /// Stripe's own libraries send them (it decodes either way, and literal
    /// ones keep request logs readable); everything else outside RFC 3986's
    /// unreserved set is percent-encoded, so a `+` in an email address can
    /// never be read back as a space.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            percent_encode(&mut out, key, true);
            out.push('=');
            percent_encode(&mut out, value, false);
        }
        out
    }
}

/// One path segment (an object id), encoded so that no id can change the
/// path it is put into.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    percent_encode(&mut out, segment, false);
    out
}

fn percent_encode(out: &mut String, text: &str, keep_brackets: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            b'[' | b']' if keep_brackets => out.push(char::from(byte)),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_nested_keys_with_literal_brackets_in_order() {
        let form = Form::new()
            .field("mode", "subscription")
            .line_item(0, "price_123", 1)
            .metadata(&[("workspace_id", "ws_01HZYX")])
            .map(
                &["subscription_data", "metadata"],
                &[("workspace_id", "ws_01HZYX")],
            )
            .expand("subscription");
        assert_eq!(
            form.encode(),
            "mode=subscription\
             &line_items[0][price]=price_123\
             &line_items[0][quantity]=1\
             &metadata[workspace_id]=ws_01HZYX\
             &subscription_data[metadata][workspace_id]=ws_01HZYX\
             &expand[]=subscription"
        );
    }

    #[test]
    fn percent_encodes_values_including_plus_and_brackets() {
        let form = Form::new()
            .field("email", "ada+billing@example.com")
            .field(
                "success_url",
                "https://app.example.com/ok?session_id={CHECKOUT_SESSION_ID}&x=1 2",
            )
            .field("name", "Zoë [team]");
        assert_eq!(
            form.encode(),
            "email=ada%2Bbilling%40example.com\
             &success_url=https%3A%2F%2Fapp.example.com%2Fok%3Fsession_id%3D%7BCHECKOUT_SESSION_ID%7D%26x%3D1%202\
             &name=Zo%C3%AB%20%5Bteam%5D"
        );
    }

    #[test]
    fn a_standard_form_decoder_reads_back_every_field() {
        let form = Form::new()
            .field("email", "a+b@example.com")
            .nested(
                &["subscription_data", "metadata", "note"],
                "50% off & more=yes",
            )
            .expand("subscription")
            .field("empty", "");
        let decoded: Vec<(String, String)> = form_urlencoded::parse(form.encode().as_bytes())
            .into_owned()
            .collect();
        assert_eq!(decoded, form.fields());
    }

    #[test]
    fn keys_and_lookups() {
        assert_eq!(Form::key(&["a"]), "a");
        assert_eq!(Form::key(&["a", "b", "c"]), "a[b][c]");
        let form = Form::new().field("k", "1").field("k", "2");
        assert_eq!(form.get("k"), Some("1"));
        assert_eq!(form.get("missing"), None);
        assert!(Form::new().is_empty());
        assert_eq!(Form::new().encode(), "");
        assert_eq!(encode_segment("cus_1/../x?y"), "cus_1%2F..%2Fx%3Fy");
    }
}
