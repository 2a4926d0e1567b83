//! `hearth template`: real checkpoint folders rendered as jinja2 renders them, and hostile or
//! missing templates as one error line.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value as Json;

use super::hearth;

fn text_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../text/tests/fixtures")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hearth-cli-tpl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn one_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn checkpoint_folder_renders_as_jinja2() {
    let fixtures = text_fixtures();
    let want: Json = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("checkpoints/expected.json")).unwrap(),
    )
    .unwrap();
    let conversations: Json = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("templates/expected.json")).unwrap(),
    )
    .unwrap();
    let dir = temp_dir("ckpt");
    let conv = dir.join("conv.json");
    let multi_turn = &conversations["conversations"]["multi-turn"];
    std::fs::write(&conv, multi_turn.to_string()).unwrap();
    for name in ["llama", "qwen2"] {
        let folder = fixtures.join("checkpoints").join(name);
        let out = hearth(&[
            "template".as_ref(),
            "--checkpoint".as_ref(),
            folder.as_os_str(),
            "--messages".as_ref(),
            conv.as_os_str(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            want["checkpoints"][name]["multi-turn"]["output"]
                .as_str()
                .unwrap()
        );
    }
}

#[test]
fn missing_and_hostile_templates_are_one_error_line() {
    let dir = temp_dir("bad");
    let conv = dir.join("conv.json");
    std::fs::write(&conv, r#"[{"role": "user", "content": "Hi"}]"#).unwrap();
    let empty = temp_dir("empty");
    let out = hearth(&[
        "template".as_ref(),
        "--checkpoint".as_ref(),
        empty.as_os_str(),
        "--messages".as_ref(),
        conv.as_os_str(),
    ]);
    assert!(one_error_line(&out).contains("has no chat template"));

    let hostile = dir.join("t.jinja");
    std::fs::write(
        &hostile,
        "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}\
         {% endfor %}{{ ns.l | last }}",
    )
    .unwrap();
    let out = hearth(&[
        "template".as_ref(),
        "--template".as_ref(),
        hostile.as_os_str(),
        "--messages".as_ref(),
        conv.as_os_str(),
    ]);
    assert!(one_error_line(&out).contains("exceeded its limits"));
}
