//! The importance-matrix reader against llama-imatrix's own file, and the legacy format.

use quantize::imatrix::Imatrix;

use crate::util::fixture;

#[test]
fn reads_llama_imatrix_gguf() {
    let m = Imatrix::read(&fixture("smollm2.imatrix.gguf")).expect("reads");
    assert!(!m.is_legacy);
    assert!(m.has_metadata);
    assert_eq!(m.chunk_count, 8);
    assert_eq!(m.chunk_size, 128);
    assert_eq!(m.datasets.len(), 1);
    assert!(m.datasets[0].ends_with("gpl-3.txt"), "{:?}", m.datasets);
    // 30 layers × (q, k, v, output, gate, up, down).
    assert_eq!(m.entries.len(), 210);
    let e = &m.entries["blk.0.ffn_down.weight"];
    assert_eq!(e.sums.len(), 1536);
    assert_eq!(e.counts, vec![8 * 128]);
    let w = m.weights().expect("weights");
    let v = &w["blk.0.ffn_down.weight"];
    assert_eq!(v[7], e.sums[7] / 1024.0);
    assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0));
}

/// A legacy `.dat` file: entries, then the chunk count and dataset name.
fn legacy(entries: &[(&str, i32, &[f32])], trailer: Option<(i32, &str)>) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend((entries.len() as i32).to_le_bytes());
    for (name, ncall, vals) in entries {
        b.extend((name.len() as i32).to_le_bytes());
        b.extend(name.as_bytes());
        b.extend(ncall.to_le_bytes());
        b.extend((vals.len() as i32).to_le_bytes());
        for v in *vals {
            b.extend(v.to_le_bytes());
        }
    }
    if let Some((chunks, dataset)) = trailer {
        b.extend(chunks.to_le_bytes());
        b.extend((dataset.len() as i32).to_le_bytes());
        b.extend(dataset.as_bytes());
    }
    b
}

#[test]
fn reads_legacy_dat() {
    let bytes = legacy(
        &[("a.weight", 4, &[8.0, 2.0]), ("b.weight", 0, &[3.0])],
        Some((12, "wiki.txt")),
    );
    let m = Imatrix::parse(&bytes).expect("parses");
    assert!(m.is_legacy);
    assert_eq!(m.chunk_count, 12);
    assert_eq!(m.datasets, vec!["wiki.txt".to_string()]);
    let w = m.weights().expect("weights");
    assert_eq!(w["a.weight"], vec![2.0, 0.5]);
    assert_eq!(w["b.weight"], vec![3.0], "ncall 0 keeps the sums");
    // Without the optional trailer too.
    let m = Imatrix::parse(&legacy(&[("a.weight", 1, &[1.0])], None)).expect("parses");
    assert_eq!(m.chunk_count, 0);
}

#[test]
fn truncated_or_hostile_files_are_errors() {
    let good = legacy(&[("a.weight", 4, &[8.0, 2.0])], None);
    for cut in [0, 3, 7, 12, good.len() - 1] {
        let err = Imatrix::parse(&good[..cut]).expect_err("truncated");
        assert!(err.to_string().contains("importance matrix"), "{err}");
    }
    // A huge entry count or value count does not allocate or panic.
    let mut huge = good.clone();
    huge[..4].copy_from_slice(&i32::MAX.to_le_bytes());
    assert!(Imatrix::parse(&huge).is_err());
    let mut huge = good;
    let at = 4 + 4 + "a.weight".len() + 4;
    huge[at..at + 4].copy_from_slice(&i32::MAX.to_le_bytes());
    assert!(Imatrix::parse(&huge).is_err());
    // A GGUF file without the pairs' partner.
    let mut b = gguf::Builder::new();
    b.add_tensor("x.weight.in_sum2", gguf::GgmlType::F32, &[2], vec![0u8; 8])
        .expect("tensor");
    let err = Imatrix::parse(&b.to_bytes()).expect_err("unpaired");
    assert!(
        err.to_string().contains("mismatched sums and counts"),
        "{err}"
    );
}
