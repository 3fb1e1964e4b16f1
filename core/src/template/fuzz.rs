//! Fuzzing of template compile and render: arbitrary sources and near-valid ones built from
//! handlebars pieces never panic, a name or Page name is inserted as text (never read as a
//! template), and nothing rendered is longer than Messenger takes. `FUZZ_CASES` sets the cases
//! per property (`bench/fuzz` runs them long).

use proptest::prelude::*;

use super::*;

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

/// A source made of handlebars pieces, valid or nearly so.
fn near_valid_source() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z !,.]{0,8}",
        Just("{{first_name}}".to_owned()),
        Just("{{first_name default=\"there\"}}".to_owned()),
        Just("{{first_name default=1}}".to_owned()),
        Just("{{first_name page_name}}".to_owned()),
        Just("{{page_name}}".to_owned()),
        Just("{{{page_name}}}".to_owned()),
        Just("{{#if first_name}}".to_owned()),
        Just("{{else}}".to_owned()),
        Just("{{/if}}".to_owned()),
        Just("{{#each page_name}}{{this}}{{/each}}".to_owned()),
        Just("{{#with page_name}}{{.}}{{/with}}".to_owned()),
        Just("{{> message}}".to_owned()),
        Just("{{#> message}}x{{/message}}".to_owned()),
        Just("{{#*inline \"p\"}}{{> p}}{{/inline}}{{> p}}".to_owned()),
        Just("{{lookup page_name 0}}".to_owned()),
        Just("{{log page_name}}".to_owned()),
        Just("{{log first_name}}".to_owned()),
        Just("{{!-- note --}}".to_owned()),
        Just("{{".to_owned()),
        Just("}}".to_owned()),
        Just("\\{{page_name}}".to_owned()),
        "\\{\\{[a-z_#/>.@ ]{0,12}\\}\\}",
    ];
    let pieces = proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat());
    let nested = (0usize..200, pieces.clone()).prop_map(|(depth, inner)| {
        format!(
            "{}{inner}{}",
            "{{#if page_name}}".repeat(depth),
            "{{/if}}".repeat(depth)
        )
    });
    prop_oneof![4 => pieces, 1 => nested]
}

fn name() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        any::<String>(),
        "\\{\\{[a-z_ ]{0,12}\\}\\}",
        ".{0,2100}"
    ])
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn any_source_compiles_or_is_refused_without_panic(
        source in prop_oneof![any::<String>(), near_valid_source()],
        first_name in name(),
        page_name in any::<String>(),
        footer in ".{0,300}",
    ) {
        let _ = Template::validate(&source, &page_name);
        if let Ok(template) = Template::compile(&source) {
            let vars = Variables { first_name: first_name.as_deref(), page_name: &page_name };
            if let Ok(text) = template.render(&vars, &footer) {
                prop_assert!(text.chars().count() <= MAX_TEXT_CHARS);
                prop_assert!(text.ends_with(&footer));
            }
        }
    }

    #[test]
    fn partials_decorators_and_the_log_helper_are_refused(
        source in prop_oneof![
            Just("{{> message}}"), Just("{{~> message~}}"), Just("{{#> message}}x{{/message}}"),
            Just("{{#*inline \"p\"}}x{{/inline}}"), Just("{{*inline \"p\"}}"),
            Just("{{log first_name}}"), Just("{{#if page_name}}{{> message}}{{/if}}"),
        ],
    ) {
        prop_assert!(Template::validate(source, "Moon Cafe").is_err(), "{source}");
    }

    #[test]
    fn names_are_inserted_as_text(
        first_name in ".{1,40}".prop_filter("a name", |name| !name.trim().is_empty()),
        page_name in ".{0,40}",
    ) {
        let template = Template::compile("{{first_name default=\"there\"}}|{{page_name}}").unwrap();
        let vars = Variables { first_name: Some(&first_name), page_name: &page_name };
        prop_assert_eq!(template.render(&vars, "").unwrap(), format!("{first_name}|{page_name}"));
    }
}
