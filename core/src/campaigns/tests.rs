use super::*;

#[test]
fn states_read_back_what_they_store() {
    for state in CampaignState::ALL {
        assert_eq!(state.as_str().parse::<CampaignState>().unwrap(), state);
    }
    let error = "stopped".parse::<CampaignState>().unwrap_err();
    assert_eq!(error.to_string(), "unknown campaign state \"stopped\"");
}
