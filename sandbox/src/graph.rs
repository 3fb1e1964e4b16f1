//! Plumbing shared by the Graph API endpoints (Send and Profile): the version path segment,
//! the access token query parameter and the usage header.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

/// The header Facebook uses to report a Page's rate-limit usage.
static USAGE_HEADER: HeaderName = HeaderName::from_static("x-business-use-case-usage");

/// The query parameters every Graph API call may carry.
#[derive(Debug, Deserialize)]
pub(crate) struct GraphQuery {
    pub(crate) access_token: Option<String>,
    pub(crate) fields: Option<String>,
}

/// Whether a path segment names a Graph API version, like `v21.0`.
pub(crate) fn is_version(segment: &str) -> bool {
    let Some((major, minor)) = segment.strip_prefix('v').and_then(|v| v.split_once('.')) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

/// `X-Business-Use-Case-Usage` for a Page that has used `percent` of this second's budget.
pub(crate) fn usage_headers(page_id: &str, percent: u32) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let key = serde_json::Value::from(page_id).to_string();
    let value = format!(
        r#"{{{key}:[{{"type":"messenger","call_count":{percent},"total_cputime":{percent},"total_time":{percent},"estimated_time_to_regain_access":0}}]}}"#
    );
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(USAGE_HEADER.clone(), value);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_graph_versions_only() {
        for ok in ["v21.0", "v2.12", "v100.3"] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in [
            "21.0", "v21", "v.0", "v21.", "vx.0", "v21.0.1", "_sandbox", "me",
        ] {
            assert!(!is_version(bad), "{bad}");
        }
    }

    #[test]
    fn usage_header_is_json_keyed_by_page() {
        let headers = usage_headers("123", 40);
        let value: serde_json::Value =
            serde_json::from_str(headers[&USAGE_HEADER].to_str().unwrap()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"123": [{"type": "messenger", "call_count": 40,
                "total_cputime": 40, "total_time": 40, "estimated_time_to_regain_access": 0}]})
        );
    }
}
