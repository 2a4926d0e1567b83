//! 3-D weight tensors (a mixture-of-experts layer's `ffn_*_exps`): each expert binds to a
//! kernel matrix of its own whose products equal those of the same rows bound as a 2-D matrix.

use std::sync::Arc;

use engine::model::{Binder, LoadError};
use gguf::{Builder, GgmlType, Gguf};
use kernels::matmul::{Scratch, matmul};
use kernels::mmap::Mmap;
use kernels::pool::ThreadPool;

use crate::synth::Rng;

fn q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; kernels::quant::row_bytes(GgmlType::Q8_0, values.len()).unwrap()];
    kernels::quant::quantize_row(GgmlType::Q8_0, values, &mut out).unwrap();
    out
}

#[test]
fn expert_tensor_binds_one_matrix_per_expert() {
    let (n_expert, rows, cols) = (4usize, 48usize, 64usize);
    let mut rng = Rng::new(3);
    let values: Vec<Vec<f32>> = (0..n_expert)
        .map(|_| rng.vec(rows * cols, -1.0, 1.0))
        .collect();
    let mut b = Builder::new();
    let all: Vec<u8> = values.iter().flat_map(|v| q8_0(v)).collect();
    b.add_tensor(
        "blk.0.ffn_up_exps.weight",
        GgmlType::Q8_0,
        &[cols as u64, rows as u64, n_expert as u64],
        all,
    )
    .unwrap();
    for (e, v) in values.iter().enumerate() {
        b.add_tensor(
            format!("expert{e}"),
            GgmlType::Q8_0,
            &[cols as u64, rows as u64],
            q8_0(v),
        )
        .unwrap();
    }
    let dir = std::env::temp_dir().join(format!("hearth-experts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("experts.gguf");
    std::fs::write(&path, b.to_bytes()).unwrap();
    let map = Arc::new(Mmap::open(&path).unwrap());
    let file = Gguf::parse(&map).unwrap();
    let release = |_| {};
    let binder = Binder::new(&file, &map, &release, true);

    let exps = binder
        .experts("blk.0.ffn_up_exps.weight", n_expert, rows, cols)
        .unwrap();
    assert_eq!(exps.experts.len(), n_expert);
    let pool = ThreadPool::new(2);
    let mut scratch = Scratch::with_capacity(3, cols);
    let x = rng.vec(3 * cols, -1.0, 1.0);
    for e in 0..n_expert {
        let single = binder.mat(&format!("expert{e}"), rows, cols).unwrap();
        let (mut y3, mut y2) = (vec![0.0; 3 * rows], vec![0.0; 3 * rows]);
        matmul(&pool, &exps.experts[e].matrix, &x, 3, &mut y3, &mut scratch).unwrap();
        matmul(&pool, &single.matrix, &x, 3, &mut y2, &mut scratch).unwrap();
        assert_eq!(y3, y2, "expert {e}");
    }
    // A wrong expert count or shape is an error naming the tensor.
    match binder.experts("blk.0.ffn_up_exps.weight", n_expert + 1, rows, cols) {
        Err(LoadError::TensorShape { name, .. }) => assert_eq!(name, "blk.0.ffn_up_exps.weight"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
