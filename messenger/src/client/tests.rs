use super::*;

#[test]
fn reads_the_usage_header() {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-business-use-case-usage",
        r#"{"123":[{"type":"messenger","call_count":85,"total_time":12,"estimated_time_to_regain_access":7}]}"#
            .parse()
            .unwrap(),
    );
    let usage = business_usage(&headers);
    assert_eq!(
        usage_field_max(&usage, &["estimated_time_to_regain_access"]),
        Some(7)
    );
    assert_eq!(
        usage_field_max(&usage, &["call_count", "total_cputime", "total_time"]),
        Some(85)
    );
    assert_eq!(
        usage_field_max(&business_usage(&Default::default()), &["call_count"]),
        None
    );
}
