use super::*;

#[test]
fn the_longest_notice_fits_a_messenger_message() {
    let claimed = Claimed {
        detected_at: Utc::now(),
        categories: DataCategory::ALL.map(|c| c.as_str().to_owned()).to_vec(),
        description: "d".repeat(MAX_DESCRIPTION_CHARS),
    };
    let text = notice_text(
        &"p".repeat(100),
        &claimed,
        "export my data",
        "delete my data",
    );
    assert!(text.chars().count() <= 2_000, "{}", text.chars().count());
}

#[test]
fn an_incident_needs_categories_a_count_and_a_past_detection() {
    let ok = NewIncident {
        detected_at: Utc::now(),
        categories: vec![DataCategory::MessengerIds],
        people_affected: 3,
        description: "A backup was readable by others.".into(),
    };
    assert!(ok.validate().is_ok());
    let none = NewIncident {
        categories: vec![],
        ..ok.clone()
    };
    assert!(matches!(
        none.validate(),
        Err(IncidentError::Invalid {
            field: "categories",
            ..
        })
    ));
    let future = NewIncident {
        detected_at: Utc::now() + chrono::Duration::days(1),
        ..ok
    };
    assert!(matches!(
        future.validate(),
        Err(IncidentError::Invalid {
            field: "detected_at",
            ..
        })
    ));
    assert!("leaked".parse::<DataCategory>().is_err());
}
