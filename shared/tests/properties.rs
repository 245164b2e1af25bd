//! Property tests: whatever a tenant sends as a definition or writes as a template, validation
//! and rendering answer (a value or an error) without panicking, within their bounds.

use nodeai::model::values::MAX_NODE_OUTPUT_BYTES;
use nodeai::template::render_string;
use nodeai::validation::validate_definition;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Template source built from the pieces templates are made of, so cases reach the engine's
/// paths (loops, filters, operators, undefined names) rather than failing to parse.
fn template_source() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{{ input.n }}".to_string()),
        Just("{{ input.s ~ input.s }}".to_string()),
        Just("{{ nodes.a.output.x | default('d') }}".to_string()),
        Just("{{ input.missing.deeper }}".to_string()),
        Just("{% for i in input.xs %}{{ i * 2 }}{% endfor %}".to_string()),
        Just("{% for i in input.xs %}{% for j in input.xs %}{% endfor %}{% endfor %}".to_string()),
        Just("{{ input.s * input.n }}".to_string()),
        Just("{{ input.xs | join(input.s) }}".to_string()),
        Just("{{ input.s | replace('a', input.s) }}".to_string()),
        Just("{{ input.xs | tojson }}".to_string()),
        Just("{{ (input.xs * input.n) | length }}".to_string()),
        Just("{% if input.n > 3 %}big{% else %}small{% endif %}".to_string()),
        "[a-z {}%|~*()'.0-9]{0,24}",
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

fn scope() -> impl Strategy<Value = Value> {
    ("[a-z]{0,40}", 0i64..2_000_000, prop::collection::vec(0i64..1000, 0..3000)).prop_map(
        |(s, n, xs)| json!({ "input": { "s": s, "n": n, "xs": xs }, "nodes": { "a": { "output": { "x": 1 } } } }),
    )
}

/// Arbitrary JSON, a few levels deep, for definitions.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        Just(json!("{{ input.x }}")),
        Just(json!("text.template")),
        Just(json!("llm.chat")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_string()),
                    Just("type".to_string()),
                    Just("config".to_string()),
                    Just("nodes".to_string()),
                    Just("edges".to_string()),
                    Just("from".to_string()),
                    Just("to".to_string()),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    // Each case may spend a template's whole work budget: fewer cases than validation's.
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn rendering_never_panics_and_stays_within_its_size(source in template_source(), scope in scope()) {
        if let Ok(value) = render_string(&source, &scope) {
            prop_assert!(value.to_string().len() <= MAX_NODE_OUTPUT_BYTES, "{} bytes", value.to_string().len());
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn validation_never_panics(nodes in json_value(), edges in json_value(), name in "\\PC{0,30}") {
        let document = json!({ "name": name, "nodes": nodes, "edges": edges });
        let size = document.to_string().len();
        let _ = validate_definition(&document, size);
    }

    #[test]
    fn validation_of_any_document_never_panics(document in json_value()) {
        let size = document.to_string().len();
        let _ = validate_definition(&document, size);
    }
}
