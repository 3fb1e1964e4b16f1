use super::*;

fn api(status: u16, code: i64, subcode: Option<i64>, transient: Option<bool>) -> SendError {
    SendError::Api {
        status,
        error: GraphError {
            message: String::new(),
            code,
            error_subcode: subcode,
            is_transient: transient,
        },
        regain_access_minutes: None,
    }
}

#[test]
fn classifies_the_documented_codes() {
    use ErrorClass::*;
    let table = [
        (api(500, 1200, None, Some(true)), Transient),
        (api(500, 1, None, None), Transient),
        (api(500, 2, None, Some(true)), Transient),
        (api(400, 4, None, None), RateLimited),
        (api(400, 17, None, None), RateLimited),
        (api(400, 32, None, None), RateLimited),
        (api(400, 613, None, None), RateLimited),
        (api(400, 80006, None, None), RateLimited),
        (api(400, 551, None, Some(false)), RecipientPermanent),
        (api(400, 551, None, Some(true)), Transient),
        (api(400, 100, Some(2018001), None), RecipientPermanent),
        (api(400, 10, Some(2018108), None), RecipientPermanent),
        (api(400, 200, Some(1545041), None), RecipientPermanent),
        (api(400, 10, Some(2018278), None), WindowClosed),
        (api(400, 190, Some(460), None), PageFatal),
        (api(400, 10, Some(2018065), None), PageFatal),
        (api(400, 200, Some(2018028), None), PageFatal),
        (api(400, 230, None, None), PageFatal),
        (api(400, 368, None, None), PageFatal),
        (api(400, 10, Some(1893063), None), PageFatal),
        (api(400, 100, None, None), Permanent),
        (SendError::Http { status: 503 }, Transient),
        (SendError::Http { status: 429 }, Transient),
        (SendError::Http { status: 404 }, Permanent),
        (SendError::Connect, Transient),
        (SendError::Ambiguous, Ambiguous),
    ];
    for (error, expected) in table {
        assert_eq!(error.class(), expected, "{error}");
    }
}
