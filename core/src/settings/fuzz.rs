//! Fuzzing of settings loading: arbitrary TOML and environment values give an error naming the
//! key, never a panic. `FUZZ_CASES` sets the cases per property (`bench/fuzz` runs them long).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::{Settings, SettingsError};

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

fn repository_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// A folder of its own holding the repository's `default.toml`, where a case writes `fuzz.toml`.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "moonengage-settings-fuzz-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        repository_config().join("default.toml"),
        dir.join("default.toml"),
    )
    .unwrap();
    dir
}

/// Every leaf key of the repository's `default.toml` (lists and tables of lists count as
/// leaves), dotted: the keys a near-valid input breaks.
fn leaf_keys() -> Vec<String> {
    fn walk(prefix: &str, value: config::Value, out: &mut Vec<String>) {
        match value.kind {
            config::ValueKind::Table(table) => {
                for (key, value) in table {
                    let key = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&key, value, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let defaults = config::Config::builder()
        .add_source(config::File::from(repository_config().join("default.toml")))
        .build()
        .unwrap();
    let mut keys = Vec::new();
    walk("", defaults.cache, &mut keys);
    keys.retain(|key| key != "app.env");
    keys.sort();
    keys
}

fn vars(extra: impl IntoIterator<Item = (String, String)>) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = extra.into_iter().collect();
    vars.insert("APP_ENV".into(), "fuzz".into());
    vars
}

/// Values of every shape a setting might be given by mistake.
fn wrong_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("1.5".to_owned()),
        Just("true".to_owned()),
        Just("not a value".to_owned()),
        Just("1:abc,2:".to_owned()),
        "[a-z0-9:,./ ]{0,12}",
        any::<String>(),
    ]
}

/// A TOML literal of any kind.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| if f.is_finite() {
            format!("{f:?}")
        } else {
            "nan".to_owned()
        }),
        any::<bool>().prop_map(|b| b.to_string()),
        // JSON's string escapes are TOML's.
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("[]".to_owned()),
        Just("[1, \"a\"]".to_owned()),
        Just("{ a = 1 }".to_owned()),
        Just("[{ id = 300, secret = \"x\" }]".to_owned()),
    ]
}

/// Whether the error names the key (as a dotted key, or as the variable that set it).
fn names(error: &SettingsError, key: &str) -> bool {
    let message = error.to_string().to_lowercase();
    let key = key.to_lowercase();
    message.contains(&key) || message.contains(&key.replace('.', "__"))
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn arbitrary_toml_and_environment_never_panic(
        toml in any::<String>(),
        env in proptest::collection::hash_map("MOONENGAGE__[A-Z_]{1,20}", any::<String>(), 0..4),
        port in proptest::option::of(any::<String>()),
    ) {
        let dir = scratch("arbitrary");
        std::fs::write(dir.join("fuzz.toml"), toml).unwrap();
        let mut vars = vars(env);
        if let Some(port) = port {
            vars.insert("PORT".into(), port);
        }
        let _ = Settings::load_with_env(&dir, &vars);
    }

    #[test]
    fn a_wrong_environment_value_is_refused_naming_its_key(
        key in proptest::sample::select(leaf_keys()),
        value in wrong_value(),
    ) {
        let dir = scratch("env");
        std::fs::write(dir.join("fuzz.toml"), "").unwrap();
        let var = format!("MOONENGAGE__{}", key.replace('.', "__").to_uppercase());
        if let Err(error) = Settings::load_with_env(&dir, &vars([(var, value)])) {
            prop_assert!(names(&error, &key), "{key}: {error}");
        }
    }

    #[test]
    fn a_wrong_toml_value_is_refused_naming_its_key(
        key in proptest::sample::select(leaf_keys()),
        value in toml_value(),
    ) {
        let dir = scratch("toml");
        let (section, name) = key.split_once('.').unwrap();
        std::fs::write(dir.join("fuzz.toml"), format!("[{section}]\n{name} = {value}\n")).unwrap();
        if let Err(error) = Settings::load_with_env(&dir, &vars([])) {
            prop_assert!(names(&error, &key), "{key} = {value}: {error}");
        }
    }
}

#[test]
fn the_repository_settings_load_through_a_given_environment() {
    let dir = scratch("valid");
    std::fs::write(dir.join("fuzz.toml"), "").unwrap();
    let settings = Settings::load_with_env(
        &dir,
        &vars([("MOONENGAGE__QUEUE__BATCH_SIZE".into(), "7".into())]),
    )
    .unwrap();
    assert_eq!(settings.queue.batch_size, 7);
    let error = Settings::load_with_env(&dir, &vars([("PORT".into(), "x".into())])).unwrap_err();
    assert!(names(&error, "PORT"), "{error}");
}
