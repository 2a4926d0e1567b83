//! Looking rows up in a matrix, whatever its layout: a repacked `Q8_0` or IQ lattice matrix
//! gives back exactly the values of its ggml-layout rows, the tail rows after the last 16-row
//! group too.

use kernels::matmul::{Matrix, MatrixOptions};
use kernels::quant::{GgmlType, dequantize_row, quantize_row, row_bytes};

#[test]
fn packed_q8_0_rows_dequantize_like_the_original() {
    let (rows, cols) = (37, 96);
    let mut seed = 7u64;
    let x: Vec<f32> = (0..rows * cols)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 4.0
        })
        .collect();
    let rb = row_bytes(GgmlType::Q8_0, cols).unwrap();
    let mut data = vec![0u8; rows * rb];
    for (r, out) in data.chunks_exact_mut(rb).enumerate() {
        quantize_row(GgmlType::Q8_0, &x[r * cols..(r + 1) * cols], out).unwrap();
    }
    let packed = Matrix::new(GgmlType::Q8_0, rows, cols, &data).unwrap();
    let plain = Matrix::with_options(
        GgmlType::Q8_0,
        rows,
        cols,
        &data,
        MatrixOptions {
            repack: false,
            ..MatrixOptions::default()
        },
    )
    .unwrap();
    let (mut want, mut a, mut b) = (vec![0.0; cols], vec![0.0; cols], vec![0.0; cols]);
    for r in 0..rows {
        dequantize_row(GgmlType::Q8_0, &data[r * rb..(r + 1) * rb], &mut want).unwrap();
        packed.dequantize_row(r, &mut a).unwrap();
        plain.dequantize_row(r, &mut b).unwrap();
        assert_eq!(a, want, "packed row {r}");
        assert_eq!(b, want, "plain row {r}");
    }
    assert!(packed.dequantize_row(rows, &mut a).is_err());
    assert!(packed.dequantize_row(0, &mut a[..cols - 1]).is_err());
}

#[test]
fn packed_lattice_rows_dequantize_like_the_original() {
    // The IQ lattice types keep each row's blocks in their packed layout: rows read back
    // exactly, in every 16-row group and after the last one.
    let mut rng = crate::quant_util::Rng::new(23);
    let (rows, cols) = (37, 512);
    for &ty in crate::dot_reference::LATTICE_TYPES {
        assert!(Matrix::packs_row_lookup(ty), "{ty}");
        let data: Vec<u8> = (0..rows)
            .flat_map(|_| crate::dot_reference::random_lattice_row(&mut rng, ty, cols))
            .collect();
        let rb = row_bytes(ty, cols).unwrap();
        let m = Matrix::new(ty, rows, cols, &data).unwrap();
        if kernels::isa::Isa::detected() > kernels::isa::Isa::Generic {
            assert!(m.is_packed(), "{ty}");
        }
        let (mut want, mut got) = (vec![0.0; cols], vec![0.0; cols]);
        for r in 0..rows {
            dequantize_row(ty, &data[r * rb..(r + 1) * rb], &mut want).unwrap();
            m.dequantize_row(r, &mut got).unwrap();
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{ty} row {r}"
            );
        }
    }
}
