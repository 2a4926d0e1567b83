//! `hearth convert` and `hearth run -m DIR` on the small llama checkpoint of the convert
//! crate's fixtures.

use crate::convert_fixtures::{build, reference_bf16};
use crate::hearth;

#[test]
fn convert_writes_llama_cpp_s_file_and_run_dir_runs_it_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    build("llama", &dir);
    let out = tmp.path().join("out.gguf");
    let o = hearth(&[
        "convert".as_ref(),
        dir.as_os_str(),
        "--outtype".as_ref(),
        "bf16".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&out).unwrap() == reference_bf16("llama"),
        "not llama.cpp's reference-bf16.gguf"
    );
    assert!(!tmp.path().join("out.gguf.part").exists());

    // The default name, llama.cpp's, in the checkpoint folder.
    let o = hearth(&[
        "convert".as_ref(),
        dir.as_os_str(),
        "--outtype".as_ref(),
        "q8_0".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.join("Hf-1.6M-Q8_0.gguf").is_file());
    std::fs::remove_file(dir.join("Hf-1.6M-Q8_0.gguf")).unwrap();

    // `run -m DIR` converts in memory (auto: bf16 here) and writes nothing: its greedy text is
    // the bf16 file's.
    let args = ["-p", "Hello world", "-n", "6", "--temp", "0"];
    let from_dir = hearth(&[&["run", "-m", dir.to_str().unwrap()][..], &args[..]].concat());
    assert!(
        from_dir.status.success(),
        "{}",
        String::from_utf8_lossy(&from_dir.stderr)
    );
    let from_file = hearth(&[&["run", "-m", out.to_str().unwrap()][..], &args[..]].concat());
    assert!(from_file.status.success());
    assert!(!from_dir.stdout.is_empty());
    assert_eq!(from_dir.stdout, from_file.stdout);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "chat_template.jinja",
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
}

#[test]
fn convert_errors_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let o = hearth(&["convert".as_ref(), tmp.path().as_os_str()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("config.json not found"), "{err}");

    let o = hearth(&[
        "convert".as_ref(),
        tmp.path().as_os_str(),
        "--outtype".as_ref(),
        "q4_0".as_ref(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown --outtype \"q4_0\""), "{err}");
}
