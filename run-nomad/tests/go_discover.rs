//! HashiCorp's go-discover (Debian's `golang-github-hashicorp-go-discover-dev`, its own
//! `discover.Parse`) reads every `retry_join` string run-nomad writes back into exactly the
//! intended arguments, with hostile values from the instance metadata and the flags; and
//! run-nomad's reading of go-discover strings, which refuses a `--retry-join` entry Nomad could
//! never use, agrees with go-discover's on hostile and truncated input.

mod common;

use std::collections::BTreeMap;

use common::{generate, go_discover_parse, hcl1_decode, instance, FakeRoot};
use run_nomad::discover;
use serde_json::json;

/// Values built to end a word, start another pair, or be trimmed away.
fn hostile() -> Vec<String> {
    [
        "plain",
        "two words",
        "k=v",
        "a=b c=d",
        "q\"uote",
        "\"wrapped\"",
        "back\\slash",
        "trailing\\",
        "new\nline",
        "tab\tand\rreturn",
        "ctl\u{1}\u{1b}\u{7f}\u{85}",
        " leading and trailing ",
        "\u{a0}nbsp\u{a0}",
        "\u{2003}em space\u{3000}",
        "line\u{2028}separator",
        "unicode ✓ é 😀",
        "provider=aws",
        "\\u0041",
        "'single'",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// The one `retry_join` entry of the generated client config, as HCL1 decodes it.
fn written_retry_join(root: &FakeRoot) -> String {
    let text = root.read("/opt/nomad/config/default.hcl");
    let doc = hcl1_decode(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let joins = &doc["client"][0]["server_join"][0]["retry_join"];
    assert_eq!(joins.as_array().map(Vec::len), Some(1), "{text}");
    joins[0].as_str().unwrap().to_string()
}

#[test]
fn go_discover_reads_the_azure_strings_run_nomad_writes_back_exactly() {
    let mut written = Vec::new();
    let mut intended = Vec::new();
    for (i, value) in hostile().into_iter().enumerate() {
        // The tag form: the tag's value from the VM's own tags, the subscription from IMDS.
        let mut doc = instance();
        let subscription = format!("sub{i} {value}");
        let tag_name = format!("cluster{i} {value}");
        doc["compute"]["subscriptionId"] = json!(subscription);
        doc["compute"]["tagsList"] = json!([{ "name": tag_name, "value": value }]);
        let root = FakeRoot::new();
        generate(&root, &doc, &["--client", "--cluster-tag-key", &tag_name]);
        written.push(written_retry_join(&root));
        intended.push(map(&[
            ("provider", "azure"),
            ("tag_name", &tag_name),
            ("tag_value", &value),
            ("subscription_id", &subscription),
        ]));

        // The scale-set form, names from flags and the resource group from a flag.
        let root = FakeRoot::new();
        let scale_set = format!("servers{i} {value}");
        let resource_group = format!("rg{i}{value}");
        generate(
            &root,
            &doc,
            &[
                "--client",
                "--scale-set-name",
                &scale_set,
                "--scale-set-resource-group",
                &resource_group,
            ],
        );
        written.push(written_retry_join(&root));
        intended.push(map(&[
            ("provider", "azure"),
            ("resource_group", &resource_group),
            ("vm_scale_set", &scale_set),
            ("subscription_id", &subscription),
        ]));
    }
    let parsed = go_discover_parse(&written);
    for ((string, got), want) in written.iter().zip(parsed).zip(intended) {
        assert_eq!(got, Ok(want), "go-discover read {string:?} differently");
    }
}

/// Strings to compare the two readings on: run-nomad's own formatted strings, every prefix of
/// them (unbalanced quotes, cut escapes, missing values), and hand-made cases.
fn corpus() -> Vec<String> {
    let mut strings: Vec<String> = [
        "",
        "   ",
        "provider=aws region=eu-west-1",
        "provider=aws  region=eu-west-1 ",
        "a=\"x\"b=1",
        "a=1 a=2",
        "a",
        "a=",
        "=a",
        "a=b=c",
        "\"quoted key\"=v",
        "a=\"\\q\"",
        "a=\"\\x41\\101\\u00e9\"",
        "a=\"\\'\"",
        "a=\"x",
        "a=\"x\\",
        "a=\"\" b=\"\"",
        "a=\u{a0}b\u{a0}",
        "\u{2003}a=b\u{2003}",
        "a=b\tc",
        "a='single quoted'",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for value in hostile() {
        let whole = discover::format(&[("provider", "azure"), ("tag_value", &value), ("k", "v")]);
        let chars: Vec<char> = whole.chars().collect();
        for end in 0..=chars.len() {
            strings.push(chars[..end].iter().collect());
        }
    }
    strings.sort();
    strings.dedup();
    strings
}

#[test]
fn run_nomads_reading_of_go_discover_strings_agrees_with_go_discover() {
    let strings = corpus();
    let theirs = go_discover_parse(&strings);
    for (string, theirs) in strings.iter().zip(theirs) {
        let ours = discover::parse(string);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{string:?}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{string:?}: run-nomad read {ours:?}, go-discover {theirs:?}"),
        }
    }
}

#[test]
fn the_corpus_has_both_readings_and_failures() {
    // A control: the comparison above is only worth something if go-discover accepts some of
    // the corpus and refuses some of it.
    let results = go_discover_parse(&corpus());
    let refused = results.iter().filter(|r| r.is_err()).count();
    let read = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    assert!(refused > 20 && read > 20, "refused {refused}, read {read}");
}
