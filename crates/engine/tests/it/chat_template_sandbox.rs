//! Hostile templates: each must end in an error (or, for undefined attributes, render as jinja2
//! does) within a bounded time, on a thread with the default 2 MiB stack, never hang or crash.

use std::time::{Duration, Instant};

use engine::chat_template::{ChatTemplate, DateTime, Message, RenderRequest, TemplateError};

/// Generous for a 2-core CI machine in a debug build; a runaway template would take minutes or
/// forever.
const TIME_BOUND: Duration = Duration::from_secs(20);

fn render(src: &str) -> Result<String, TemplateError> {
    let messages = [Message::new("user", "Hello")];
    let t = ChatTemplate::new(src)?;
    t.render(&RenderRequest {
        messages: &messages,
        add_generation_prompt: true,
        bos_token: "<s>",
        eos_token: "</s>",
        now: Some(DateTime::from_unix_seconds(0)),
        ..RenderRequest::default()
    })
}

/// Renders on a fresh thread with the standard 2 MiB stack and checks the time taken.
fn render_bounded(src: &str) -> Result<String, TemplateError> {
    let src = src.to_owned();
    let start = Instant::now();
    let result = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || render(&src))
        .unwrap()
        .join()
        .expect("rendering must not panic or overflow the stack");
    let took = start.elapsed();
    assert!(took < TIME_BOUND, "took {took:?}");
    result
}

fn assert_limit(src: &str) {
    match render_bounded(src) {
        Err(TemplateError::Limit(_)) => {}
        other => panic!("{src:?}: expected a limit error, got {other:?}"),
    }
}

fn assert_error(src: &str) {
    let got = render_bounded(src);
    assert!(got.is_err(), "{src:?}: expected an error, got {got:?}");
}

#[test]
fn runaway_loops_run_out_of_fuel() {
    assert_limit(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    );
    assert_limit(
        "{% set ns = namespace(n=0) %}{% for i in range(100000) %}{% for j in range(100000) %}\
         {% set ns.n = ns.n + 1 %}{% endfor %}{% endfor %}{{ ns.n }}",
    );
}

#[test]
fn huge_range_is_refused() {
    assert_error("{% for i in range(1000000000) %}x{% endfor %}");
    assert_error("{{ range(10 ** 12) | length }}");
}

#[test]
fn deep_recursion_is_stopped() {
    assert_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
    assert_error("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}");
    assert_error(
        "{% macro f(n) %}{% for x in [1] %}{{ f(n) }}{% endfor %}{% endmacro %}{{ f(0) }}",
    );
}

#[test]
fn deeply_nested_source_is_a_syntax_error() {
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(matches!(
        render_bounded(&parens),
        Err(TemplateError::Syntax(_))
    ));
    let ifs = format!(
        "{}x{}",
        "{% if true %}".repeat(10_000),
        "{% endif %}".repeat(10_000)
    );
    assert!(render_bounded(&ifs).is_err());
    let lists = format!("{{{{ {}{} }}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(render_bounded(&lists).is_err());
}

#[test]
fn ten_megabyte_output_is_refused() {
    assert_limit("{{ 'x' * 10000000 }}");
    assert_limit("{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}");
    assert_limit(
        "{% for i in range(100000) %}yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy{% endfor %}",
    );
    assert_limit(
        "{% set ns = namespace(s='x' * 1000) %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}\
         {% endfor %}{{ ns.s }}",
    );
}

#[test]
fn values_grown_by_doubling_cannot_be_printed_or_dumped() {
    // `+` on lists is lazy in MiniJinja: 2^32 items cost 32 steps to build. (Past 32 levels
    // MiniJinja materializes the list without charging fuel; see the module docs.)
    let doubled = "{% set ns = namespace(l=[1]) %}{% for i in range(32) %}{% set ns.l = ns.l + ns.l %}{% endfor %}";
    assert_limit(&format!("{doubled}{{{{ ns.l }}}}"));
    assert_limit(&format!("{doubled}{{{{ ns.l | tojson }}}}"));
    assert_limit(&format!("{doubled}{{{{ ns.l | string }}}}"));
    assert_eq!(
        render_bounded(&format!("{doubled}{{{{ ns.l | length }}}}")).unwrap(),
        "4294967296"
    );
}

#[test]
fn deeply_nested_values_are_refused() {
    let nested = "{% set ns = namespace(l=[]) %}{% for i in range(50000) %}{% set ns.l = [ns.l] %}{% endfor %}";
    assert_limit(&format!("{nested}{{{{ ns.l }}}}"));
    assert_limit(&format!("{nested}{{{{ ns.l | tojson }}}}"));
    // Nesting as deep as the fuel allows, then dropped at the end of the render: MiniJinja drops
    // recursively, which the render thread's stack must absorb.
    let deepest = "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% for j in range(100000) %}\
                   {% set ns.l = [ns.l] %}{% endfor %}{% endfor %}";
    assert_limit(deepest);
}

#[test]
fn undefined_attributes_behave_like_jinja2() {
    // A missing key of a defined value is an empty Undefined; going further into it fails.
    assert_eq!(render_bounded("[{{ messages[0].nope }}]").unwrap(), "[]");
    assert_eq!(render_bounded("[{{ nope }}]").unwrap(), "[]");
    assert!(matches!(
        render_bounded("{{ messages[0].nope.deeper }}"),
        Err(TemplateError::Render(_))
    ));
    assert!(render_bounded("{{ nope() }}").is_err());
    assert!(render_bounded("{{ nope.attr }}").is_err());
}

#[test]
fn raise_exception_is_reported_as_such() {
    assert_eq!(
        render_bounded("{{ raise_exception('Only user and assistant roles') }}"),
        Err(TemplateError::Raised(
            "Only user and assistant roles".into()
        ))
    );
}

#[test]
fn no_loader_means_no_file_access() {
    assert_error("{% include '/etc/passwd' %}");
    assert_error("{% import '/etc/passwd' as x %}");
    assert_error("{% extends '/etc/passwd' %}");
}

#[test]
fn syntax_errors_are_reported() {
    assert!(matches!(
        ChatTemplate::new("{% if %}"),
        Err(TemplateError::Syntax(_))
    ));
    assert!(matches!(
        ChatTemplate::new("{{ 'unclosed"),
        Err(TemplateError::Syntax(_))
    ));
    assert!(matches!(
        ChatTemplate::new("{% endfor %}"),
        Err(TemplateError::Syntax(_))
    ));
}
