//! The KV cache: per layer, keys and values of every position as f16 rows, preallocated for the
//! whole context and written in place.

use half::f16;

/// Keys and values of every layer for positions `0..n_ctx`.
pub struct KvCache {
    n_ctx: usize,
    /// Width of one position's keys (all KV heads).
    k_width: usize,
    /// Width of one position's values (all KV heads).
    v_width: usize,
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
}

impl KvCache {
    pub fn new(n_layer: usize, n_ctx: usize, k_width: usize, v_width: usize) -> KvCache {
        KvCache {
            n_ctx,
            k_width,
            v_width,
            k: (0..n_layer)
                .map(|_| vec![f16::ZERO; n_ctx * k_width])
                .collect(),
            v: (0..n_layer)
                .map(|_| vec![f16::ZERO; n_ctx * v_width])
                .collect(),
        }
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Bytes held by the cache.
    pub fn n_bytes(&self) -> usize {
        (self.k.len() * self.k_width + self.v.len() * self.v_width) * self.n_ctx * 2
    }

    /// Writes the keys and values of consecutive positions starting at `pos0` into layer `il`.
    /// The caller guarantees `pos0 + rows <= n_ctx` (checked when the batch was accepted).
    pub fn store(&mut self, il: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let ks = &mut self.k[il][pos0 * self.k_width..pos0 * self.k_width + k.len()];
        kernels::ops::Ops::detected().f32_to_f16(ks, k);
        let vs = &mut self.v[il][pos0 * self.v_width..pos0 * self.v_width + v.len()];
        kernels::ops::Ops::detected().f32_to_f16(vs, v);
    }

    /// Keys of layer `il`, `n_ctx` rows of `k_width`.
    pub fn keys(&self, il: usize) -> &[f16] {
        &self.k[il]
    }

    /// Values of layer `il`, `n_ctx` rows of `v_width`.
    pub fn values(&self, il: usize) -> &[f16] {
        &self.v[il]
    }
}
