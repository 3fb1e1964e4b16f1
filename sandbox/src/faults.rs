//! Failure injection: the errors, timeouts and transport failures the sandbox produces on purpose
//! so tests can prove the backend retries, skips and halts as the Graph API requires.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

/// How long a PSID in timeout mode keeps the request open when no `hang_ms` is given.
const DEFAULT_HANG: Duration = Duration::from_secs(30);

/// The complete set of injected failures; setting it replaces the previous set.
///
/// JSON: `{"random":[…],"by_psid":{…},"by_page":{…},"http_503_rate":0.05}`, every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Errors given to a random fraction of otherwise successful Send calls.
    pub random: Vec<RandomFault>,
    /// Errors (or a hang) for every Send call to a given PSID.
    pub by_psid: HashMap<String, PsidFault>,
    /// Errors for every Send and Profile call made with a given Page's token.
    pub by_page: HashMap<String, ErrorSpec>,
    /// Fraction (0..=1) of Send calls answered with a plain-text HTTP 503, as a failing proxy would.
    pub http_503_rate: f64,
}

/// A Graph API error to inject; fields left out take the values Facebook uses for `code`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorSpec {
    /// The Graph API error code (`1200`, `551`, `190`, …).
    pub code: u32,
    /// The `error_subcode`, omitted from the answer when `None`.
    #[serde(default)]
    pub subcode: Option<u32>,
    /// Overrides the error message.
    #[serde(default)]
    pub message: Option<String>,
    /// Overrides `is_transient`.
    #[serde(default)]
    pub is_transient: Option<bool>,
    /// Overrides the HTTP status (Facebook sends most errors as 400, codes 1, 2 and 1200 as 500).
    #[serde(default)]
    pub http_status: Option<u16>,
}

impl ErrorSpec {
    /// An error with Facebook's defaults for `code` and no subcode.
    pub fn new(code: u32) -> Self {
        Self {
            code,
            subcode: None,
            message: None,
            is_transient: None,
            http_status: None,
        }
    }

    /// The same error with an `error_subcode`.
    pub fn with_subcode(self, subcode: u32) -> Self {
        Self {
            subcode: Some(subcode),
            ..self
        }
    }
}

/// An error given to a random fraction of Send calls, to exercise retries under flaky delivery.
///
/// JSON: `{"code":1200,"subcode":null,"rate":0.3,"first_attempt_only":true}`.
#[derive(Debug, Clone, Deserialize)]
pub struct RandomFault {
    /// The error to answer with.
    #[serde(flatten)]
    pub error: ErrorSpec,
    /// Fraction (0..=1) of eligible calls that fail.
    pub rate: f64,
    /// When true only the first call for a given Page + PSID + text is eligible, so a retry of the
    /// same message always gets through (first since the faults were last set or reset).
    #[serde(default)]
    pub first_attempt_only: bool,
}

/// What happens to every Send call addressed to one PSID.
///
/// JSON: an [`ErrorSpec`] (`{"code":551}`), or `{"mode":"timeout","hang_ms":30000}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawPsidFault")]
pub enum PsidFault {
    /// Answer with this error; the message is not recorded.
    Error(ErrorSpec),
    /// Record the message as received, then keep the request unanswered for `hang` (then answer
    /// success): the ambiguous failure where the request was written but no answer came back.
    Timeout {
        /// How long to hold the answer back.
        hang: Duration,
    },
}

/// The JSON form of [`PsidFault`], before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPsidFault {
    mode: Option<String>,
    hang_ms: Option<u64>,
    code: Option<u32>,
    subcode: Option<u32>,
    message: Option<String>,
    is_transient: Option<bool>,
    http_status: Option<u16>,
}

impl TryFrom<RawPsidFault> for PsidFault {
    type Error = String;

    fn try_from(raw: RawPsidFault) -> Result<Self, String> {
        match raw.mode.as_deref() {
            Some("timeout") => Ok(PsidFault::Timeout {
                hang: raw.hang_ms.map_or(DEFAULT_HANG, Duration::from_millis),
            }),
            None | Some("error") => {
                let code = raw.code.ok_or("a PSID error fault needs a `code`")?;
                Ok(PsidFault::Error(ErrorSpec {
                    code,
                    subcode: raw.subcode,
                    message: raw.message,
                    is_transient: raw.is_transient,
                    http_status: raw.http_status,
                }))
            }
            Some(other) => Err(format!(
                "unknown PSID fault mode `{other}` (use `error` or `timeout`)"
            )),
        }
    }
}

impl Faults {
    /// Whether any random fault needs to know if a call is the first for its message.
    pub(crate) fn tracks_first_attempts(&self) -> bool {
        self.random.iter().any(|f| f.first_attempt_only)
    }

    /// Picks the random fault (if any) this call gets; `first_attempt` says whether this is the
    /// first call seen for its Page + PSID + text.
    pub(crate) fn roll_random(&self, first_attempt: bool) -> Option<&ErrorSpec> {
        self.random
            .iter()
            .filter(|f| first_attempt || !f.first_attempt_only)
            .find(|f| chance(f.rate))
            .map(|f| &f.error)
    }
}

/// True with probability `rate` (clamped to 0..=1).
pub(crate) fn chance(rate: f64) -> bool {
    rate >= 1.0 || (rate > 0.0 && rand::random::<f64>() < rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fault_kind_from_json() {
        let faults: Faults = serde_json::from_value(serde_json::json!({
            "random": [{"code": 1200, "subcode": null, "rate": 0.3, "first_attempt_only": true}],
            "by_psid": {
                "a": {"code": 551, "is_transient": false, "http_status": 400},
                "b": {"mode": "timeout", "hang_ms": 250},
                "c": {"mode": "timeout"}
            },
            "by_page": {"p": {"code": 190, "subcode": 463}},
            "http_503_rate": 0.1
        }))
        .unwrap();
        assert_eq!(faults.random[0].error.code, 1200);
        assert!(faults.random[0].first_attempt_only);
        assert!(matches!(&faults.by_psid["a"], PsidFault::Error(e) if e.code == 551));
        assert!(
            matches!(faults.by_psid["b"], PsidFault::Timeout { hang } if hang == Duration::from_millis(250))
        );
        assert!(matches!(faults.by_psid["c"], PsidFault::Timeout { hang } if hang == DEFAULT_HANG));
        assert_eq!(faults.by_page["p"].subcode, Some(463));
        assert!(faults.tracks_first_attempts());
    }

    #[test]
    fn rejects_a_psid_error_without_code_and_unknown_modes() {
        let no_code = serde_json::from_value::<PsidFault>(serde_json::json!({"subcode": 1}));
        assert!(no_code.is_err());
        let bad_mode = serde_json::from_value::<PsidFault>(serde_json::json!({"mode": "slow"}));
        assert!(bad_mode.is_err());
    }

    #[test]
    fn first_attempt_only_faults_skip_retries() {
        let faults = Faults {
            random: vec![RandomFault {
                error: ErrorSpec::new(1200),
                rate: 1.0,
                first_attempt_only: true,
            }],
            ..Faults::default()
        };
        assert_eq!(faults.roll_random(true).map(|e| e.code), Some(1200));
        assert!(faults.roll_random(false).is_none());
    }

    #[test]
    fn chance_respects_the_bounds() {
        assert!((0..1000).all(|_| chance(1.0)));
        assert!((0..1000).all(|_| !chance(0.0)));
        let hits = (0..10_000).filter(|_| chance(0.5)).count();
        assert!((4000..6000).contains(&hits), "{hits}");
    }
}
