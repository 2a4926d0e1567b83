//! Hostile templates: each must end in an error (or, for undefined attributes, render as jinja2
//! does) within a bounded time, on a thread with the default 2 MiB stack, never hang or crash.

use std::time::{Duration, Instant};

use text::chat_template::{ChatTemplate, DateTime, Limits, Message, RenderRequest, TemplateError};

/// Generous for a 2-core CI machine in a debug build; a runaway template would take minutes or
/// forever.
const TIME_BOUND: Duration = Duration::from_secs(20);

fn render_with(src: &str, limits: Limits) -> Result<String, TemplateError> {
    let messages = [Message::new("user", "Hello")];
    let t = ChatTemplate::with_limits(src, limits)?;
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
    render_bounded_with(src, Limits::default())
}

fn render_bounded_with(src: &str, limits: Limits) -> Result<String, TemplateError> {
    let src = src.to_owned();
    let start = Instant::now();
    let result = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || render_with(&src, limits))
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

/// Each way to double a value in one cheap step, repeated: `{step}` turns `x` into a value
/// twice its size, applied in a loop through a namespace and in a recursive macro, and then the
/// result is used by `{sink}` (which walks it). MiniJinja's own `+` is lazy and costs no fuel,
/// so without hearth's guards these run out of memory or never end. (A smaller node bound than
/// the default keeps the 160 renders quick in a debug build; `doubling_within_the_default_limits`
/// runs a few with the defaults.)
#[test]
fn values_grown_by_doubling_are_refused() {
    let limits = Limits {
        max_value_nodes: 20_000,
        ..Limits::default()
    };
    let steps = [
        "x + x",
        "x * 2",
        "[x, x]",
        "(x, x)",
        "{'a': x, 'b': x}",
        "dict(a=x, b=x)",
        "namespace(a=x, b=x)",
        "[x] + [x]",
        "x | batch(1) | list + x | batch(1) | list",
    ];
    let sinks = [
        "x | last",
        "x | list | length",
        "'a' ~ x",
        "x | join(',')",
        "x | string",
        "x | tojson",
        "[x] | unique | list | length",
        "x == y",
    ];
    for step in steps {
        for sink in sinks {
            let in_loop = format!(
                "{{% set ns = namespace(x=[1], y=[1]) %}}{{% for i in range(64) %}}\
                 {{% set x = ns.x %}}{{% set ns.x = {step} %}}{{% set x = ns.y %}}{{% set ns.y = {step} %}}\
                 {{% endfor %}}{{% set x, y = ns.x, ns.y %}}{{{{ {sink} }}}}"
            );
            let got = render_bounded_with(&in_loop, limits);
            assert!(
                matches!(got, Err(TemplateError::Limit(_))),
                "{in_loop}: {got:?}"
            );
            let recursive = format!(
                "{{% macro grow(x, y, n) %}}{{% if n %}}{{{{ grow({step}, {y_step}, n - 1) }}}}\
                 {{% else %}}{{{{ {sink} }}}}{{% endif %}}{{% endmacro %}}{{{{ grow([1], [1], 40) }}}}",
                y_step = step.replace('x', "y")
            );
            let got = render_bounded_with(&recursive, limits);
            assert!(
                matches!(got, Err(TemplateError::Limit(_))),
                "{recursive}: {got:?}"
            );
        }
    }
}

#[test]
fn doubling_within_the_default_limits() {
    for step in ["x + x", "[x, x]", "namespace(a=x, b=x)"] {
        assert_limit(&format!(
            "{{% set ns = namespace(x=[1]) %}}{{% for i in range(64) %}}{{% set x = ns.x %}}\
             {{% set ns.x = {step} %}}{{% endfor %}}{{{{ ns.x | last }}}}"
        ));
    }
}

#[test]
fn a_bare_tuple_in_a_macro_cannot_double_a_value() {
    assert_limit(
        "{% macro d(l, n) %}{% set x = l, l %}{% if n %}{{ d(x, n - 1) }}{% else %}\
         {{ x | join }}{% endif %}{% endmacro %}{{ d([1], 60) }}",
    );
}

#[test]
fn strings_grown_by_addition_are_refused() {
    assert_limit(
        "{% set ns = namespace(s='x' * 1000) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}\
         {% endfor %}{{ ns.s | length }}",
    );
    assert_limit("{{ ('x' * 1000) * 100000 }}");
    assert_limit(
        "{% set ns = namespace(s='x' * 1000) %}{% for i in range(40) %}\
         {% set ns.s = [ns.s, ns.s] | join %}{% endfor %}{{ ns.s | length }}",
    );
    assert_limit("{{ ([1] * 100000000) | list | length }}");
}

#[test]
fn format_widths_beyond_the_output_cap_are_refused() {
    // Each would allocate a gigabyte inside one filter call, before any result check.
    assert_limit("{{ '%1000000000s' | format(1) }}");
    assert_limit("{{ '%.1000000000f' | format(1.5) }}");
    assert_limit("{{ '%*s' | format(1000000000, 'x') }}");
    assert_limit("{{ '{:>1000000000}'.format(1) }}");
    assert_limit("{{ '｜%1000000000s｜' | format(1) }}");
    // A non-ASCII index made MiniJinja 3.1.0's format parser panic (found by fuzzing).
    assert_error("{{ '{0[é]}'.format({'é': 1}) }}");
    assert_error("{{ '{}-\t{}-: {__[earth\u{fffd}\u{fffd}}'.format(1, 'a') }}");
    // Nested width fields are not supported; an error either way.
    assert_error("{{ '{:{w}}'.format(1, w=1000000000) }}");
}

#[test]
fn a_namespace_inside_itself_is_refused() {
    let cycle = "{% set ns = namespace() %}{% set ns.me = ns %}";
    for sink in [
        "'a' ~ ns",
        "ns == ns.me",
        "ns | string",
        "[ns] | unique | list",
    ] {
        assert_limit(&format!("{cycle}{{{{ {sink} }}}}"));
    }
    let indirect =
        "{% set ns = namespace() %}{% set other = namespace(n=ns) %}{% set ns.o = [other] %}x";
    assert_limit(indirect);
    // MiniJinja's `debug()` prints the whole state, cycles included; jinja2 has no `debug`.
    assert_error("{{ debug() }}");
}

#[test]
fn long_operator_chains_fail_cleanly() {
    // A chain of `+` parses into a tree as deep as it is long; it must end in an error, not
    // a stack overflow, whether it is compiled or too long to be.
    let chain = |n: usize| format!("{{{{ {} }}}}", vec!["1"; n].join(" + "));
    assert!(render_bounded(&chain(100)).is_ok_and(|s| s == "100"));
    assert!(matches!(
        render_bounded(&chain(50_000)),
        Err(TemplateError::Syntax(_))
    ));
    assert!(matches!(
        render_bounded(&chain(200_000)),
        Err(TemplateError::Limit(_))
    ));
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
