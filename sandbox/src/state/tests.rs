use super::*;
use crate::records::QuickReply;

fn message(page: &str, psid: &str, text: &str) -> ReceivedMessage {
    ReceivedMessage {
        page_id: page.into(),
        psid: psid.into(),
        text: text.into(),
        quick_replies: vec![QuickReply {
            title: "Yes".into(),
            payload: "YES".into(),
        }],
        messaging_type: "UPDATE".into(),
        tag: None,
        message_id: "m_1".into(),
        received_at_ms: 0,
    }
}

#[test]
fn stats_count_messages_duplicates_and_rejections() {
    let state = SandboxState::new(Duration::ZERO, 0);
    let page: Arc<str> = Arc::from("p1");
    for (psid, text) in [
        ("a", "hi"),
        ("a", "hi"),
        ("a", "hi"),
        ("b", "hi"),
        ("a", "yo"),
    ] {
        state.record(
            &page,
            message("p1", psid, text),
            message_key("p1", psid, text),
            Instant::now(),
        );
    }
    state.reject(&page, Rejection::Code(100));
    state.reject(&page, Rejection::Http503);
    let stats = state.stats();
    assert_eq!(stats.received_total, 5);
    assert_eq!(stats.duplicates, 1);
    let p1 = &stats.by_page["p1"];
    assert_eq!(p1.received, 5);
    assert_eq!(p1.max_per_second, 5);
    assert_eq!(p1.rejected["100"], 1);
    assert_eq!(p1.rejected["http_503"], 1);
}

#[test]
fn messages_filter_by_page_and_psid() {
    let state = SandboxState::new(Duration::ZERO, 0);
    for (page, psid) in [("p1", "a"), ("p1", "b"), ("p2", "a")] {
        let page_id: Arc<str> = Arc::from(page);
        state.record(
            &page_id,
            message(page, psid, "t"),
            message_key(page, psid, "t"),
            Instant::now(),
        );
    }
    let only = |page: Option<&str>, psid: Option<&str>| {
        let filter = MessageFilter {
            page_id: page.map(Into::into),
            psid: psid.map(Into::into),
        };
        state.messages(&filter).len()
    };
    assert_eq!(only(None, None), 3);
    assert_eq!(only(Some("p1"), None), 2);
    assert_eq!(only(None, Some("a")), 2);
    assert_eq!(only(Some("p2"), Some("a")), 1);
    assert_eq!(only(Some(""), Some("")), 3);
}

#[test]
fn tokens_resolve_by_registration_or_demo_form() {
    let state = SandboxState::new(Duration::ZERO, 0);
    state.register_page(PageRegistration {
        page_id: "42".into(),
        access_token: "secret".into(),
        name: None,
    });
    assert_eq!(state.resolve_token("secret").as_deref(), Some("42"));
    assert_eq!(state.resolve_token("sandbox-token-7").as_deref(), Some("7"));
    assert_eq!(state.resolve_token("sandbox-token-"), None);
    assert_eq!(state.resolve_token("other"), None);
}

#[test]
fn reset_keeps_registrations_and_restores_settings() {
    let state = SandboxState::new(Duration::from_millis(5), 300);
    state.register_page(PageRegistration {
        page_id: "42".into(),
        access_token: "secret".into(),
        name: None,
    });
    let page: Arc<str> = Arc::from("42");
    let key = message_key("42", "a", "t");
    state.record(&page, message("42", "a", "t"), key, Instant::now());
    state.close_window(["a"]);
    state.set_faults(Faults {
        http_503_rate: 1.0,
        ..Faults::default()
    });
    state.set_latency(Duration::from_secs(1));
    state.set_rate_limit(1);
    state.count_request();

    state.reset();

    assert_eq!(state.stats(), Stats::default());
    assert!(!state.is_window_closed("a"));
    assert_eq!(state.faults().http_503_rate, 0.0);
    assert_eq!(state.latency(), Duration::from_millis(5));
    assert!(state.admit(&page).allowed);
    assert_eq!(state.admit(&page).usage_percent, 0);
    assert_eq!(state.resolve_token("secret").as_deref(), Some("42"));
}

#[test]
fn message_ids_are_unique() {
    let state = SandboxState::new(Duration::ZERO, 0);
    let ids: HashSet<String> = (0..1000).map(|_| state.next_message_id()).collect();
    assert_eq!(ids.len(), 1000);
    assert!(ids.iter().all(|id| id.starts_with("m_")));
}
