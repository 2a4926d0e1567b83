//! The AVX-512 level of a CPU without VNNI (Skylake-X: the 512-bit float and elementwise
//! kernels with the AVX2 integer ones) is a kernel set of its own. On a CPU with VNNI this test
//! runs the whole binary again with `HEARTH_ISA=avx512-novnni`, so every differential test
//! covers that set too. (It found the single-token F32 products summing in the AVX2 order
//! while a batch took the 512-bit tile order.)

use std::process::Command;

use kernels::isa::Isa;

#[test]
fn every_test_passes_on_avx512_without_vnni() {
    if std::env::var_os("HEARTH_ISA").is_some() {
        return; // this run is the one below (or another forced level)
    }
    if Isa::best_supported() != Isa::Avx512 || !Isa::has_vnni() {
        // Without VNNI the plain run already is that level; without AVX-512 it cannot run.
        eprintln!("the AVX-512-without-VNNI set is covered by the plain run or absent here");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--skip", "every_test_passes_on_avx512_without_vnni"])
        .env("HEARTH_ISA", "avx512-novnni")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("test result: ok"), "{text}");
}
