//! Quantization to the lattice types `IQ2_XXS`, `IQ2_XS`, `IQ2_S`, `IQ3_XXS`, `IQ3_S`, `IQ1_S`
//! and `IQ1_M`: ports of ggml's `quantize_row_*_impl` (ggml-quants.c) that write the same bytes
//! as llama-quantize.
//!
//! Each type's values are points of a fixed grid (`iq_grids`, shared with dequantization). The
//! search needs, per grid, what ggml's `iq2xs_init_impl`/`iq3xs_init_impl` build: every grid
//! point as levels `2l+1`, a map from a packed vector of levels to its grid index, and for the
//! vectors off the grid the list of nearest grid points (all points at the `nwant` smallest
//! distances, ordered by distance, then index). They are built once per grid ([`OnceLock`]),
//! only for the vectors the quantizers can produce.
//!
//! The float arithmetic follows ggml's operation order and precision exactly (ggml-base is built
//! without FMA contraction), and the sorts are stable as glibc's `qsort` (a merge sort for these
//! sizes) is.

use std::sync::OnceLock;

use super::blocks::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, F16Bytes,
    QK_K, as_blocks_mut,
};
use super::iq_grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID};
use super::kquants::{make_qp_quants, nearest_int};

const GROUP_MAX_EPS: f32 = 1e-15;
const GROUP_MAX_EPS_IQ3_XXS: f32 = 1e-8;
const GROUP_MAX_EPS_IQ2_S: f32 = 1e-8;
const GROUP_MAX_EPS_IQ1_M: f32 = 1e-7;
const GROUP_MAX_EPS_IQ1_S: f32 = 1e-12;
const IQ1_DELTA: f32 = 0.125;

/// C's `MAX(a, b)`: `a > b ? a : b` (NaN handling included).
#[inline(always)]
fn cmax(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// One grid with its search tables. `N` values per point, `BITS` bits per level in the packed
/// index.
struct Lattice<const N: usize> {
    /// Each point as `2l + 1` per coordinate.
    points: Vec<[i8; N]>,
    /// Packed levels → grid index, or `-(offset + 1)` into `neighbours` for vectors off the grid
    /// (`i32::MIN` for vectors the quantizers never produce).
    map: Vec<i32>,
    /// At each offset: the count, then that many grid indices.
    neighbours: Vec<u16>,
}

impl<const N: usize> Lattice<N> {
    /// Builds the tables for a grid whose points have the levels `levels(k)`, packed with
    /// `bits` bits per level, searching `nwant` distances and reachable levels `0..max_level`.
    fn new(
        n_points: usize,
        levels: impl Fn(usize) -> [u8; N],
        bits: u32,
        max_level: u8,
        nwant: usize,
    ) -> Self {
        let points: Vec<[i8; N]> = (0..n_points)
            .map(|k| levels(k).map(|l| (2 * l + 1) as i8))
            .collect();
        let map_size = 1usize << (bits as usize * N);
        let mut map = vec![i32::MIN; map_size];
        for (k, p) in points.iter().enumerate() {
            map[Self::pack(&p.map(|v| ((v - 1) / 2) as u8), bits)] = k as i32;
        }
        let mut neighbours = Vec::new();
        let mut d2 = vec![0i32; n_points];
        let mut lv = [0u8; N];
        'outer: for (u, slot) in map.iter_mut().enumerate() {
            if *slot != i32::MIN {
                continue;
            }
            for (k, l) in lv.iter_mut().enumerate() {
                *l = ((u >> (bits as usize * k)) & ((1 << bits) - 1)) as u8;
                if *l >= max_level {
                    continue 'outer;
                }
            }
            let pos = lv.map(|l| (2 * l + 1) as i32);
            for (d, p) in d2.iter_mut().zip(&points) {
                *d = p
                    .iter()
                    .zip(&pos)
                    .map(|(&a, &b)| (a as i32 - b).pow(2))
                    .sum();
            }
            // The `nwant` smallest distinct distances; then every point at one of them, by
            // (distance, index): ggml's sorted list cut after the `nwant`-th distance.
            let mut dists: Vec<i32> = Vec::with_capacity(nwant);
            for &d in &d2 {
                if dists.contains(&d) {
                    continue;
                }
                if dists.len() < nwant {
                    dists.push(d);
                    dists.sort_unstable();
                } else if d < dists[nwant - 1] {
                    dists[nwant - 1] = d;
                    dists.sort_unstable();
                }
            }
            let limit = dists.last().copied().unwrap_or(0);
            let mut near: Vec<(i32, u16)> = d2
                .iter()
                .enumerate()
                .filter(|&(_, &d)| d <= limit)
                .map(|(j, &d)| (d, j as u16))
                .collect();
            near.sort_unstable();
            *slot = -(neighbours.len() as i32 + 1);
            neighbours.push(near.len() as u16);
            neighbours.extend(near.iter().map(|&(_, j)| j));
        }
        Lattice {
            points,
            map,
            neighbours,
        }
    }

    fn pack(l: &[u8], bits: u32) -> usize {
        l.iter()
            .enumerate()
            .fold(0, |u, (i, &v)| u | (usize::from(v) << (bits as usize * i)))
    }

    /// The neighbour list of the off-grid vector whose map entry is `m` (< 0).
    fn near(&self, m: i32) -> &[u16] {
        if m == i32::MIN {
            return &[];
        }
        let off = (-(m + 1)) as usize;
        let n = usize::from(self.neighbours[off]);
        &self.neighbours[off + 1..off + 1 + n]
    }

    /// ggml's `iq2_find_best_neighbour`/`iq3_find_best_neighbour`: the neighbour nearest to
    /// `x / scale` in the weighted distance; writes its levels to `l`.
    fn best_neighbour(&self, m: i32, x: &[f32], w: &[f32], scale: f32, l: &mut [i8]) -> usize {
        let near = self.near(m);
        let mut best_d2 = f32::MAX;
        let mut best = near.first().map_or(0, |&j| usize::from(j));
        for &j in near {
            let pg = &self.points[usize::from(j)];
            let mut d2 = 0.0f32;
            for i in 0..N {
                let diff = scale * f32::from(pg[i]) - x[i];
                d2 += w[i] * diff * diff;
            }
            if d2 < best_d2 {
                best_d2 = d2;
                best = usize::from(j);
            }
        }
        for (li, &p) in l.iter_mut().zip(&self.points[best]) {
            *li = (p - 1) / 2;
        }
        best
    }
}

fn levels_of<const N: usize>(bytes: [u8; N], values: &[u8]) -> [u8; N] {
    bytes.map(|b| values.iter().position(|&v| v == b).unwrap_or(0) as u8)
}

/// The lattices, as ggml's `iq2_data`/`iq3_data`.
enum Grid {
    Iq2Xxs,
    Iq2Xs,
    Iq2S,
    Iq1S,
}

fn lattice8(g: Grid) -> &'static Lattice<8> {
    static L: [OnceLock<Lattice<8>>; 4] = [const { OnceLock::new() }; 4];
    const IQ2_VALUES: [u8; 3] = [8, 25, 43];
    let make = |grid: &'static [u64], values: &'static [u8], nwant| {
        Lattice::new(
            grid.len(),
            |k| levels_of(grid[k].to_le_bytes(), values),
            2,
            3,
            nwant,
        )
    };
    match g {
        Grid::Iq2Xxs => L[0].get_or_init(|| make(&IQ2XXS_GRID, &IQ2_VALUES, 2)),
        Grid::Iq2Xs => L[1].get_or_init(|| make(&IQ2XS_GRID, &IQ2_VALUES, 2)),
        Grid::Iq2S => L[2].get_or_init(|| make(&IQ2S_GRID, &IQ2_VALUES, 1)),
        Grid::Iq1S => L[3].get_or_init(|| make(&IQ1S_GRID, &[0xff, 0, 1], 3)),
    }
}

fn lattice4(grid_512: bool) -> &'static Lattice<4> {
    static L: [OnceLock<Lattice<4>>; 2] = [const { OnceLock::new() }; 2];
    let make = |grid: &'static [u32], values: &'static [u8], nwant| {
        Lattice::new(
            grid.len(),
            |k| levels_of(grid[k].to_le_bytes(), values),
            3,
            8,
            nwant,
        )
    };
    if grid_512 {
        L[1].get_or_init(|| make(&IQ3S_GRID, &[1, 3, 5, 7, 9, 11, 13, 15], 3))
    } else {
        L[0].get_or_init(|| make(&IQ3XXS_GRID, &[4, 12, 20, 28, 36, 44, 52, 62], 2))
    }
}

/// `Σ x²` over a super-block, in order.
fn sum_x2(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// The group's importance weights: `qw · sqrt(σ² + x²)`, or `fallback(x)` without `qw`.
fn group_weights(
    x: &[f32],
    qw: Option<&[f32]>,
    sigma2: f32,
    fallback: fn(f32, f32) -> f32,
    w: &mut [f32],
) {
    for (i, wi) in w.iter_mut().enumerate() {
        *wi = match qw {
            Some(q) => q[i] * (sigma2 + x[i] * x[i]).sqrt(),
            None => fallback(sigma2, x[i]),
        };
    }
}

/// Absolute values of a group of 8 with an even number of sign flips: when the count of
/// negatives is odd, the value of least weighted square keeps its sign flipped back (negative
/// in `xval`). Returns the 7-bit sign index.
fn even_signs(xb: &[f32], w: &[f32], xval: &mut [f32]) -> u8 {
    let mut nflip = 0;
    let mut s = 0u8;
    for i in 0..8 {
        if xb[i] >= 0.0 {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            nflip += 1;
            s |= 1 << i;
        }
    }
    if nflip % 2 == 1 {
        let mut imin = 0;
        let mut min = w[0] * xb[0] * xb[0];
        for i in 1..8 {
            let ax = w[i] * xb[i] * xb[i];
            if ax < min {
                min = ax;
                imin = i;
            }
        }
        xval[imin] = -xval[imin];
        s ^= 1 << imin;
    }
    s & 127
}

/// Plain signs of a group of 8 (`IQ2_S`, `IQ3_S`).
fn plain_signs(xb: &[f32], xval: &mut [f32]) -> u8 {
    let mut s = 0u8;
    for i in 0..8 {
        if xb[i] >= 0.0 {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            s |= 1 << i;
        }
    }
    s
}

/// After the scale search, how ggml re-fits the points with the chosen scale.
#[derive(Clone, Copy, PartialEq)]
enum Refit {
    /// Every point, whenever the scale is positive (`IQ2_XXS`).
    Always,
    /// The points the best try found off the grid (`IQ2_XS`, `IQ2_S`, `IQ3_XXS`).
    OffGrid,
    /// Every point when any was off the grid (`IQ3_S`).
    AllIfAnyOff,
}

/// The scale search of one group shared by the `IQ2`/`IQ3` quantizers.
struct Search {
    kmax: i32,
    /// Tries `-range..=range`.
    range: i32,
    step: f32,
    refit: Refit,
    /// `is_on_grid` before any try succeeds.
    on_grid_init: bool,
}

/// The largest of a group's values, as ggml's `max = MAX(max, x)` loop (`cmax`).
fn group_max(xval: &[f32]) -> f32 {
    xval[1..].iter().fold(xval[0], |m, &v| cmax(m, v))
}

/// A negative scale made positive by flipping every sign bit (`mask`: the sign bits in use),
/// as ggml does after its search.
fn positive_scale(scale: f32, signs: &mut [u8], mask: u8) -> f32 {
    if scale < 0.0 {
        for s in signs {
            *s = !*s & mask;
        }
        -scale
    } else {
        scale
    }
}

/// Finds a group's scale and grid levels `l` (ggml's loop body between the signs and the
/// packing). `max` is the group's largest `xval`; `scale0` the starting scale.
#[allow(clippy::too_many_arguments)]
fn search_group<const N: usize>(
    lat: &Lattice<N>,
    p: &Search,
    xval: &[f32],
    weight: &[f32],
    waux: &[f32],
    max: f32,
    scale0: f32,
    l: &mut [i8],
) -> f32 {
    let n = xval.len();
    let npts = n / N;
    let bits = if N == 8 { 2 } else { 3 };
    let kmax = p.kmax;
    let level = |id: f32, v: f32| nearest_int(0.5 * (id * v - 1.0)).clamp(0, kmax - 1);
    let pack = |lv: &[i8]| {
        lv.iter()
            .enumerate()
            .fold(0usize, |u, (i, &v)| u | ((v as usize) << (bits * i)))
    };
    let sums = |lv: &[i8]| {
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for i in 0..n {
            let w = weight[i];
            let q = (2 * i32::from(lv[i]) + 1) as f32;
            sumqx += w * xval[i] * q;
            sumq2 += w * q * q;
        }
        (sumqx, sumq2)
    };
    let mut laux = [0i8; 32];
    let mut on_grid = [p.on_grid_init; 8];
    let mut on_grid_aux = [true; 8];
    let mut best = 0.0f32;
    let mut scale = scale0;
    for is in -p.range..=p.range {
        let id = ((2 * kmax - 1) as f32 + is as f32 * p.step) / max;
        let this_scale = 1.0 / id;
        for k in 0..npts {
            let r = N * k..N * k + N;
            for i in r.clone() {
                laux[i] = level(id, xval[i]) as i8;
            }
            let m = lat.map[pack(&laux[r.clone()])];
            on_grid_aux[k] = m >= 0;
            if m < 0 {
                lat.best_neighbour(
                    m,
                    &xval[r.clone()],
                    &waux[r.clone()],
                    this_scale,
                    &mut laux[r],
                );
            }
        }
        let (sumqx, sumq2) = sums(&laux[..n]);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            l[..n].copy_from_slice(&laux[..n]);
            on_grid[..npts].copy_from_slice(&on_grid_aux[..npts]);
        }
    }
    let any_off = on_grid[..npts].iter().any(|&g| !g);
    let refit = match p.refit {
        Refit::Always => scale > 0.0,
        Refit::OffGrid | Refit::AllIfAnyOff => any_off && scale > 0.0,
    };
    if refit {
        let id = 1.0 / scale;
        for k in 0..npts {
            if p.refit == Refit::OffGrid && on_grid[k] {
                continue;
            }
            let r = N * k..N * k + N;
            let mut lv = [0i8; N];
            for (j, i) in r.clone().enumerate() {
                lv[j] = level(id, xval[i]) as i8;
            }
            let m = lat.map[pack(&lv)];
            if m >= 0 {
                l[r].copy_from_slice(&lv);
            } else {
                lat.best_neighbour(m, &xval[r.clone()], &waux[r.clone()], scale, &mut l[r]);
            }
        }
        let (sumqx, sumq2) = sums(&l[..n]);
        if sumq2 > 0.0 {
            scale = sumqx / sumq2;
        }
    }
    scale
}

/// The grid index of each point of `l` (levels on the grid; 0 for the impossible off-grid case,
/// where ggml aborts).
fn grid_indices<const N: usize>(lat: &Lattice<N>, l: &[i8], out: &mut [usize]) {
    let bits = if N == 8 { 2 } else { 3 };
    for (o, lv) in out.iter_mut().zip(l.chunks_exact(N)) {
        let u = lv
            .iter()
            .enumerate()
            .fold(0usize, |u, (i, &v)| u | (((v as usize) & 7) << (bits * i)));
        *o = usize::try_from(lat.map[u]).unwrap_or(0);
    }
}

/// The 4-bit super-block scale code of a group scale (`nearest_int(0.5·(s/d − 1))` in 0..=15).
fn scale_code(id: f32, s: f32, max: i32) -> i32 {
    nearest_int(0.5 * (id * s - 1.0)).clamp(0, max)
}

/// ggml's `quantize_row_iq2_xxs_impl` (needs importance weights).
pub(crate) fn quantize_iq2_xxs(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let lat = lattice8(Grid::Iq2Xxs);
    const KMAX: i32 = 3;
    let search = Search {
        kmax: KMAX,
        range: 6,
        step: 0.1,
        refit: Refit::Always,
        on_grid_init: true,
    };
    for (ibl, (y, xbl)) in as_blocks_mut::<BlockIq2Xxs>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .enumerate()
    {
        let mut q2 = [0u32; 16];
        let mut scales = [0.0f32; 8];
        let mut max_scale = 0.0f32;
        let sigma2 = sum_x2(xbl) / QK_K as f32;
        for ib in 0..8 {
            let xb = &xbl[32 * ib..32 * ib + 32];
            let qwb = &qw[QK_K * ibl + 32 * ib..QK_K * ibl + 32 * ib + 32];
            let mut weight = [0.0f32; 32];
            group_weights(xb, Some(qwb), sigma2, |_, _| 0.0, &mut weight);
            let waux = weight.map(f32::sqrt);
            let mut xval = [0.0f32; 32];
            let mut signs = [0u8; 4];
            for k in 0..4 {
                signs[k] = even_signs(&xb[8 * k..], &weight[8 * k..], &mut xval[8 * k..8 * k + 8]);
            }
            let max = group_max(&xval);
            if max < GROUP_MAX_EPS {
                continue;
            }
            let mut lq = [0u8; 32];
            let scale0 = make_qp_quants(KMAX + 1, &xval, &mut lq, &weight);
            let eff_max = scale0 * KMAX as f32;
            if eff_max <= 0.0 {
                continue;
            }
            let mut l = lq.map(|v| v as i8);
            let scale = search_group(lat, &search, &xval, &weight, &waux, eff_max, scale0, &mut l);
            let scale = positive_scale(scale, &mut signs, 127);
            let mut idx = [0usize; 4];
            grid_indices(lat, &l, &mut idx);
            for k in 0..4 {
                q2[2 * ib] |= (idx[k] as u32) << (8 * k);
                q2[2 * ib + 1] |= u32::from(signs[k]) << (7 * k);
            }
            scales[ib] = scale;
            max_scale = cmax(max_scale, scale);
        }
        y.d = F16Bytes::from_f32(0.0);
        if max_scale == 0.0 {
            y.qs = [0; 64];
            continue;
        }
        let d = max_scale / 31.0;
        y.d = F16Bytes::from_f32(d);
        let id = 1.0 / d;
        for ib in 0..8 {
            q2[2 * ib + 1] |= (scale_code(id, scales[ib], 15) as u32) << 28;
        }
        for (o, v) in y.qs.chunks_exact_mut(4).zip(q2) {
            o.copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// ggml's `quantize_row_iq2_xs_impl` (needs importance weights).
pub(crate) fn quantize_iq2_xs(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let lat = lattice8(Grid::Iq2Xs);
    let search = Search {
        kmax: 3,
        range: 9,
        step: 0.1,
        refit: Refit::OffGrid,
        on_grid_init: true,
    };
    for (ibl, (y, xbl)) in as_blocks_mut::<BlockIq2Xs>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .enumerate()
    {
        let mut q2 = [0u16; 32];
        let mut scales = [0.0f32; 16];
        let mut max_scale = 0.0f32;
        y.scales = [0; 8];
        let sigma2 = sum_x2(xbl) / QK_K as f32;
        for ib in 0..16 {
            let xb = &xbl[16 * ib..16 * ib + 16];
            let qwb = &qw[QK_K * ibl + 16 * ib..QK_K * ibl + 16 * ib + 16];
            let mut weight = [0.0f32; 16];
            group_weights(xb, Some(qwb), sigma2, |_, _| 0.0, &mut weight);
            let waux = weight.map(f32::sqrt);
            let mut xval = [0.0f32; 16];
            let mut signs = [0u8; 2];
            for k in 0..2 {
                signs[k] = even_signs(&xb[8 * k..], &weight[8 * k..], &mut xval[8 * k..8 * k + 8]);
            }
            let max = group_max(&xval);
            if max < GROUP_MAX_EPS {
                continue;
            }
            let mut l = [0i8; 16];
            let scale = search_group(lat, &search, &xval, &weight, &waux, max, max / 5.0, &mut l);
            let scale = positive_scale(scale, &mut signs, 127);
            let mut idx = [0usize; 2];
            grid_indices(lat, &l, &mut idx);
            for k in 0..2 {
                q2[2 * ib + k] = idx[k] as u16 | (u16::from(signs[k]) << 9);
            }
            scales[ib] = scale;
            max_scale = cmax(max_scale, scale);
        }
        y.d = F16Bytes::from_f32(0.0);
        if max_scale == 0.0 {
            y.qs = [0; 64];
            continue;
        }
        let d = max_scale / 31.0;
        y.d = F16Bytes::from_f32(d);
        let id = 1.0 / d;
        for ib in 0..16 {
            let l = scale_code(id, scales[ib], 15) as u8;
            if ib % 2 == 0 {
                y.scales[ib / 2] = l;
            } else {
                y.scales[ib / 2] |= l << 4;
            }
        }
        for (o, v) in y.qs.chunks_exact_mut(2).zip(q2) {
            o.copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// ggml's `quantize_row_iq2_s_impl` (importance weights optional).
pub(crate) fn quantize_iq2_s(src: &[f32], qw: Option<&[f32]>, dst: &mut [u8]) {
    let lat = lattice8(Grid::Iq2S);
    let search = Search {
        kmax: 3,
        range: 9,
        step: 0.1,
        refit: Refit::OffGrid,
        on_grid_init: true,
    };
    for (ibl, (y, xbl)) in as_blocks_mut::<BlockIq2S>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .enumerate()
    {
        y.d = F16Bytes::from_f32(0.0);
        y.qs = [0; 64];
        y.qh = [0; 8];
        y.scales = [0; 8];
        let mut scales = [0.0f32; 16];
        let mut max_scale = 0.0f32;
        let sigma2 = 2.0 * sum_x2(xbl) / QK_K as f32;
        for ib in 0..16 {
            let xb = &xbl[16 * ib..16 * ib + 16];
            let qwb = qw.map(|w| &w[QK_K * ibl + 16 * ib..QK_K * ibl + 16 * ib + 16]);
            let mut weight = [0.0f32; 16];
            group_weights(xb, qwb, sigma2, |s2, x| 0.25 * s2 + x * x, &mut weight);
            let waux = weight.map(f32::sqrt);
            let mut xval = [0.0f32; 16];
            let mut signs = [0u8; 2];
            for k in 0..2 {
                signs[k] = plain_signs(&xb[8 * k..], &mut xval[8 * k..8 * k + 8]);
            }
            let max = group_max(&xval);
            if max < GROUP_MAX_EPS_IQ2_S {
                continue;
            }
            let mut l = [0i8; 16];
            let scale = search_group(lat, &search, &xval, &weight, &waux, max, max / 5.0, &mut l);
            let scale = positive_scale(scale, &mut signs, 0xFF);
            let mut idx = [0usize; 2];
            grid_indices(lat, &l, &mut idx);
            for k in 0..2 {
                let i8 = 2 * ib + k;
                y.qs[i8] = (idx[k] & 255) as u8;
                y.qh[i8 / 4] |= ((idx[k] >> 8) << (2 * (i8 % 4))) as u8;
                y.qs[QK_K / 8 + i8] = signs[k];
            }
            scales[ib] = scale;
            max_scale = cmax(max_scale, scale);
        }
        if max_scale == 0.0 {
            continue;
        }
        let d = max_scale / 31.0;
        y.d = F16Bytes::from_f32(d * 0.9875);
        let id = 1.0 / d;
        for ib in 0..16 {
            let l = scale_code(id, scales[ib], 15) as u8;
            if ib % 2 == 0 {
                y.scales[ib / 2] = l;
            } else {
                y.scales[ib / 2] |= l << 4;
            }
        }
    }
}

/// ggml's `quantize_row_iq3_xxs_impl` with the 256-point grid (importance weights optional).
pub(crate) fn quantize_iq3_xxs(src: &[f32], qw: Option<&[f32]>, dst: &mut [u8]) {
    let lat = lattice4(false);
    let search = Search {
        kmax: 8,
        range: 15,
        step: 0.2,
        refit: Refit::OffGrid,
        on_grid_init: true,
    };
    for (ibl, (y, xbl)) in as_blocks_mut::<BlockIq3Xxs>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .enumerate()
    {
        // Grid indices (64 bytes), then a word of signs and scale per group of 32.
        let mut q3 = [0u8; 64];
        let mut ss = [0u32; 8];
        let mut scales = [0.0f32; 8];
        let mut max_scale = 0.0f32;
        let sigma2 = 2.0 * sum_x2(xbl) / QK_K as f32;
        for ib in 0..8 {
            let xb = &xbl[32 * ib..32 * ib + 32];
            let qwb = qw.map(|w| &w[QK_K * ibl + 32 * ib..QK_K * ibl + 32 * ib + 32]);
            let mut weight = [0.0f32; 32];
            group_weights(xb, qwb, sigma2, |_, x| x * x, &mut weight);
            let waux = weight.map(f32::sqrt);
            let mut xval = [0.0f32; 32];
            let mut signs = [0u8; 4];
            for k in 0..4 {
                signs[k] = even_signs(&xb[8 * k..], &weight[8 * k..], &mut xval[8 * k..8 * k + 8]);
            }
            let max = group_max(&xval);
            if max < GROUP_MAX_EPS_IQ3_XXS {
                continue;
            }
            let mut l = [0i8; 32];
            let scale = search_group(lat, &search, &xval, &weight, &waux, max, max / 15.0, &mut l);
            let scale = positive_scale(scale, &mut signs, 127);
            let mut idx = [0usize; 8];
            grid_indices(lat, &l, &mut idx);
            for k in 0..8 {
                q3[8 * ib + k] = idx[k] as u8;
            }
            ss[ib] = u32::from(signs[0])
                | (u32::from(signs[1]) << 7)
                | (u32::from(signs[2]) << 14)
                | (u32::from(signs[3]) << 21);
            scales[ib] = scale;
            max_scale = cmax(max_scale, scale);
        }
        y.d = F16Bytes::from_f32(0.0);
        if max_scale == 0.0 {
            y.qs = [0; 96];
            continue;
        }
        let d = max_scale / 31.0;
        y.d = F16Bytes::from_f32(d * 1.0125);
        let id = 1.0 / d;
        for ib in 0..8 {
            ss[ib] |= (scale_code(id, scales[ib], 15) as u32) << 28;
        }
        y.qs[..64].copy_from_slice(&q3);
        for (o, v) in y.qs[64..].chunks_exact_mut(4).zip(ss) {
            o.copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// ggml's `quantize_row_iq3_s_impl` with groups of 32 (importance weights optional). As in
/// ggml, an all-zero group does not advance the grid-index and sign cursors.
pub(crate) fn quantize_iq3_s(src: &[f32], qw: Option<&[f32]>, dst: &mut [u8]) {
    let lat = lattice4(true);
    let search = Search {
        kmax: 8,
        range: 9,
        step: 0.2,
        refit: Refit::AllIfAnyOff,
        on_grid_init: false,
    };
    for (ibl, (y, xbl)) in as_blocks_mut::<BlockIq3S>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .enumerate()
    {
        y.d = F16Bytes::from_f32(0.0);
        y.qs = [0; 64];
        y.qh = [0; 8];
        y.signs = [0; 32];
        y.scales = [0; 4];
        let (mut qs_at, mut signs_at) = (0usize, 0usize);
        let mut scales = [0.0f32; 8];
        let mut max_scale = 0.0f32;
        let sigma2 = 2.0 * sum_x2(xbl) / QK_K as f32;
        for ib in 0..8 {
            let xb = &xbl[32 * ib..32 * ib + 32];
            let qwb = qw.map(|w| &w[QK_K * ibl + 32 * ib..QK_K * ibl + 32 * ib + 32]);
            let mut weight = [0.0f32; 32];
            group_weights(xb, qwb, sigma2, |_, x| x * x, &mut weight);
            let waux = weight.map(f32::sqrt);
            let mut xval = [0.0f32; 32];
            let mut signs = [0u8; 4];
            for k in 0..4 {
                signs[k] = plain_signs(&xb[8 * k..], &mut xval[8 * k..8 * k + 8]);
            }
            let max = group_max(&xval);
            if max == 0.0 {
                continue;
            }
            let mut l = [0i8; 32];
            let scale = search_group(lat, &search, &xval, &weight, &waux, max, max / 15.0, &mut l);
            let scale = positive_scale(scale, &mut signs, 0xFF);
            let mut idx = [0usize; 8];
            grid_indices(lat, &l, &mut idx);
            for k in 0..8 {
                y.qs[qs_at + k] = (idx[k] & 255) as u8;
                y.qh[(ib * 8 + k) / 8] |= ((idx[k] >> 8) << ((ib * 8 + k) % 8)) as u8;
            }
            qs_at += 8;
            y.signs[signs_at..signs_at + 4].copy_from_slice(&signs);
            signs_at += 4;
            scales[ib] = scale;
            max_scale = cmax(max_scale, scale);
        }
        if max_scale == 0.0 {
            continue;
        }
        let d = max_scale / 31.0;
        y.d = F16Bytes::from_f32(d * 1.033);
        let id = 1.0 / d;
        for ib in (0..8).step_by(2) {
            let l1 = scale_code(id, scales[ib], 15) as u8;
            let l2 = scale_code(id, scales[ib + 1], 15) as u8;
            y.scales[ib / 2] = l1 | (l2 << 4);
        }
    }
}

/// The order that sorts `x` ascending, equal values in their original order (glibc's `qsort`
/// merge sort with ggml's `iq1_sort_helper`).
fn sorted_order<const N: usize>(x: &[f32]) -> [usize; N] {
    let mut idx: [usize; N] = std::array::from_fn(|i| i);
    idx.sort_by(|&a, &b| {
        if x[a] < x[b] {
            std::cmp::Ordering::Less
        } else if x[a] > x[b] {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    idx
}

/// ggml's `iq1_find_best_neighbour2`: the neighbour of least weighted distance to `x` with the
/// point values `xg[level]·scale`; writes its levels to `l`.
fn iq1_best_neighbour(
    lat: &Lattice<8>,
    m: i32,
    x: &[f32],
    w: &[f32],
    scale: f32,
    xg: &[f32; 3],
    l: &mut [i8],
) -> usize {
    let d2_of = |pg: &[i8; 8]| {
        let mut d2 = 0.0f32;
        for i in 0..8 {
            let q = xg[((pg[i] - 1) / 2) as usize];
            let diff = scale * q - x[i];
            d2 += w[i] * diff * diff;
        }
        d2
    };
    let mut best_d2 = f32::MAX;
    let mut best = None;
    for &j in lat.near(m) {
        let d2 = d2_of(&lat.points[usize::from(j)]);
        if d2 < best_d2 {
            best_d2 = d2;
            best = Some(usize::from(j));
        }
    }
    // ggml scans the whole grid when no neighbour scores (only with non-finite input; its
    // scan then reads past `x`, so this fallback simply takes the first neighbour).
    let best = best
        .or_else(|| lat.near(m).first().map(|&j| usize::from(j)))
        .unwrap_or(0);
    for (li, &p) in l.iter_mut().zip(&lat.points[best]) {
        *li = (p - 1) / 2;
    }
    best
}

const X_P: [f32; 3] = [-1.0 + IQ1_DELTA, IQ1_DELTA, 1.0 + IQ1_DELTA];
const X_M: [f32; 3] = [-1.0 - IQ1_DELTA, -IQ1_DELTA, 1.0 - IQ1_DELTA];

fn iq1_grid_index(lat: &Lattice<8>, l: &[i8]) -> i32 {
    lat.map[l
        .iter()
        .enumerate()
        .fold(0usize, |u, (j, &v)| u | (((v as usize) & 3) << (2 * j)))]
}

/// ggml's `quantize_row_iq1_s_impl` (needs importance weights).
pub(crate) fn quantize_iq1_s(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let lat = lattice8(Grid::Iq1S);
    const BS: usize = 32;
    for (ibl, (y, xbl)) in as_blocks_mut::<BlockIq1S>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .enumerate()
    {
        y.d = F16Bytes::from_f32(0.0);
        y.qs = [0; 32];
        let mut qh = [0u16; 8];
        let mut scales = [0.0f32; 8];
        let mut shifts = [0i8; 8];
        let mut max_scale = 0.0f32;
        let sigma2 = 2.0 * sum_x2(xbl) / QK_K as f32;
        for ib in 0..QK_K / BS {
            let xb = &xbl[BS * ib..BS * ib + BS];
            let qwb = &qw[QK_K * ibl + BS * ib..QK_K * ibl + BS * ib + BS];
            let mut weight = [0.0f32; BS];
            group_weights(xb, Some(qwb), sigma2, |_, _| 0.0, &mut weight);
            let mut max = xb[0].abs();
            for &v in &xb[1..] {
                max = cmax(max, v.abs());
            }
            if max < GROUP_MAX_EPS_IQ1_S {
                shifts[ib] = 1;
                continue;
            }
            let idx = sorted_order::<BS>(xb);
            let mut sumx = [0.0f32; BS + 1];
            let mut sumw = [0.0f32; BS + 1];
            for j in 0..BS {
                let i = idx[j];
                sumx[j + 1] = sumx[j] + weight[i] * xb[i];
                sumw[j + 1] = sumw[j] + weight[i];
            }
            let mut best_score = -f32::MAX;
            let mut scale = max;
            let (mut besti1, mut besti2, mut best_shift) = (-1i32, -1i32, 0i32);
            for i1 in 0..=BS {
                for i2 in i1..=BS {
                    for (xs, shift) in [(&X_P, 1), (&X_M, -1)] {
                        let sumqx = (sumx[i1] - sumx[0]) * xs[0]
                            + (sumx[i2] - sumx[i1]) * xs[1]
                            + (sumx[BS] - sumx[i2]) * xs[2];
                        let sumq2 = (sumw[i1] - sumw[0]) * xs[0] * xs[0]
                            + (sumw[i2] - sumw[i1]) * xs[1] * xs[1]
                            + (sumw[BS] - sumw[i2]) * xs[2] * xs[2];
                        if sumq2 > 0.0 && sumqx * sumqx > best_score * sumq2 {
                            scale = sumqx / sumq2;
                            best_score = scale * sumqx;
                            besti1 = i1 as i32;
                            besti2 = i2 as i32;
                            best_shift = shift;
                        }
                    }
                }
            }
            if besti1 < 0 || besti2 < 0 || best_shift == 0 {
                shifts[ib] = 1;
                continue;
            }
            let mut l = [0i8; BS];
            for (j, &i) in idx.iter().enumerate() {
                l[i] = if (j as i32) < besti1 {
                    0
                } else if (j as i32) < besti2 {
                    1
                } else {
                    2
                };
            }
            if scale < 0.0 {
                for v in &mut l {
                    *v = 2 - *v;
                }
                scale = -scale;
                best_shift = -best_shift;
            }
            let xx = if best_shift == 1 { &X_P } else { &X_M };
            let mut all_on_grid = true;
            let mut index = [0usize; BS / 8];
            for k in 0..BS / 8 {
                let r = 8 * k..8 * k + 8;
                let m = iq1_grid_index(lat, &l[r.clone()]);
                index[k] = if m >= 0 {
                    m as usize
                } else {
                    all_on_grid = false;
                    iq1_best_neighbour(
                        lat,
                        m,
                        &xb[r.clone()],
                        &weight[r.clone()],
                        scale,
                        xx,
                        &mut l[r],
                    )
                };
            }
            if !all_on_grid {
                let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
                for k in 0..BS / 8 {
                    let pg = &lat.points[index[k]];
                    for j in 0..8 {
                        let w = weight[8 * k + j];
                        let q = xx[((pg[j] - 1) / 2) as usize];
                        sumqx += w * q * xb[8 * k + j];
                        sumq2 += w * q * q;
                    }
                }
                if sumqx > 0.0 && sumq2 > 0.0 {
                    scale = sumqx / sumq2;
                }
            }
            let mut h = 0u16;
            for k in 0..BS / 8 {
                y.qs[(BS / 8) * ib + k] = (index[k] & 255) as u8;
                h |= ((index[k] >> 8) << (3 * k)) as u16;
            }
            qh[ib] = h;
            scales[ib] = scale;
            shifts[ib] = best_shift as i8;
            max_scale = cmax(max_scale, scale);
        }
        if max_scale != 0.0 {
            let d = max_scale / 15.0;
            y.d = F16Bytes::from_f32(d * 1.125);
            let id = 1.0 / d;
            for ib in 0..QK_K / BS {
                let mut l = scale_code(id, scales[ib], 7) as u16;
                if shifts[ib] == -1 {
                    l |= 8;
                }
                qh[ib] |= l << 12;
            }
        }
        for (o, v) in y.qh.chunks_exact_mut(2).zip(qh) {
            o.copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// ggml's `quantize_row_iq1_m_impl` (importance weights optional).
pub(crate) fn quantize_iq1_m(src: &[f32], qw: Option<&[f32]>, dst: &mut [u8]) {
    let lat = lattice8(Grid::Iq1S);
    const BS: usize = 16;
    const MASKS: [u8; 4] = [0x00, 0x80, 0x08, 0x88];
    // Which of x_p/x_m the half `k` of a group with shift code `s` uses.
    let pick = |s: i32, k: usize| {
        let plus = if k == 0 { s < 2 } else { s % 2 == 0 };
        if plus { &X_P } else { &X_M }
    };
    for (ibl, (y, xbl)) in as_blocks_mut::<BlockIq1M>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .enumerate()
    {
        y.qs = [0; 32];
        y.qh = [0; 16];
        let mut sc = [0u16; 4];
        let mut scales = [0.0f32; QK_K / BS];
        let mut shifts = [0i32; QK_K / BS];
        let mut max_scale = 0.0f32;
        let sigma2 = 2.0 * sum_x2(xbl) / QK_K as f32;
        let weights_of = |ib: usize, w: &mut [f32; BS]| {
            let xb = &xbl[BS * ib..BS * ib + BS];
            let qwb = qw.map(|q| &q[QK_K * ibl + BS * ib..QK_K * ibl + BS * ib + BS]);
            group_weights(xb, qwb, sigma2, |_, x| x * x, w);
        };
        for ib in 0..QK_K / BS {
            let xb = &xbl[BS * ib..BS * ib + BS];
            let mut weight = [0.0f32; BS];
            weights_of(ib, &mut weight);
            let mut max = xb[0].abs();
            for &v in &xb[1..] {
                max = cmax(max, v.abs());
            }
            if max < GROUP_MAX_EPS_IQ1_M {
                continue;
            }
            let idx = sorted_order::<BS>(xb);
            let mut best_score = -f32::MAX;
            let mut scale = max;
            let (mut besti1, mut besti2, mut best_k) = (-1i32, -1i32, -1i32);
            let mut px = [[0.0f32; BS + 1]; 2];
            let mut pw = [[0.0f32; BS + 1]; 2];
            for j in 0..BS {
                let i = idx[j];
                let h = usize::from(i >= BS / 2);
                px[h][j + 1] = px[h][j] + weight[i] * xb[i];
                px[1 - h][j + 1] = px[1 - h][j];
                pw[h][j + 1] = pw[h][j] + weight[i];
                pw[1 - h][j + 1] = pw[1 - h][j];
            }
            let txs = [px[0][BS], px[1][BS]];
            let tws = [pw[0][BS], pw[1][BS]];
            let (p2, m2) = (X_P[2], X_M[2]);
            let cp1 = X_P[0] * X_P[0] - X_P[1] * X_P[1];
            let cp2 = X_P[1] * X_P[1] - X_P[2] * X_P[2];
            let cm1 = X_M[0] * X_M[0] - X_M[1] * X_M[1];
            let cm2 = X_M[1] * X_M[1] - X_M[2] * X_M[2];
            for i1 in 0..=BS {
                for i2 in i1..=BS {
                    let (mut qx_p, mut qx_m, mut q2_p, mut q2_m) =
                        ([0.0f32; 2], [0.0f32; 2], [0.0f32; 2], [0.0f32; 2]);
                    for h in 0..2 {
                        let sx = px[h][i1] + px[h][i2];
                        qx_p[h] = txs[h] * p2 - sx;
                        qx_m[h] = txs[h] * m2 - sx;
                        q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
                        q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
                    }
                    let sumqx = [
                        qx_p[0] + qx_p[1],
                        qx_p[0] + qx_m[1],
                        qx_m[0] + qx_p[1],
                        qx_m[0] + qx_m[1],
                    ];
                    let sumq2 = [
                        q2_p[0] + q2_p[1],
                        q2_p[0] + q2_m[1],
                        q2_m[0] + q2_p[1],
                        q2_m[0] + q2_m[1],
                    ];
                    for k in 0..4 {
                        if sumq2[k] > 0.0 && sumqx[k] * sumqx[k] > best_score * sumq2[k] {
                            scale = sumqx[k] / sumq2[k];
                            best_score = scale * sumqx[k];
                            besti1 = i1 as i32;
                            besti2 = i2 as i32;
                            best_k = k as i32;
                        }
                    }
                }
            }
            if besti1 < 0 || besti2 < 0 || best_k < 0 {
                continue;
            }
            let mut l = [0i8; BS];
            for (j, &i) in idx.iter().enumerate() {
                l[i] = if (j as i32) < besti1 {
                    0
                } else if (j as i32) < besti2 {
                    1
                } else {
                    2
                };
            }
            if scale < 0.0 {
                for v in &mut l {
                    *v = 2 - *v;
                }
                scale = -scale;
                best_k = 3 - best_k;
            }
            let mut all_on_grid = true;
            let mut index = [0usize; 2];
            for k in 0..2 {
                let xx = pick(best_k, k);
                let r = 8 * k..8 * k + 8;
                let m = iq1_grid_index(lat, &l[r.clone()]);
                index[k] = if m >= 0 {
                    m as usize
                } else {
                    all_on_grid = false;
                    iq1_best_neighbour(
                        lat,
                        m,
                        &xb[r.clone()],
                        &weight[r.clone()],
                        scale,
                        xx,
                        &mut l[r],
                    )
                };
            }
            if !all_on_grid {
                let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
                for k in 0..2 {
                    let xx = pick(best_k, k);
                    let pg = &lat.points[index[k]];
                    for j in 0..8 {
                        let w = weight[8 * k + j];
                        let q = xx[((pg[j] - 1) / 2) as usize];
                        sumqx += w * q * xb[8 * k + j];
                        sumq2 += w * q * q;
                    }
                }
                if sumqx > 0.0 && sumq2 > 0.0 {
                    scale = sumqx / sumq2;
                }
            }
            y.qs[2 * ib] = (index[0] & 255) as u8;
            y.qs[2 * ib + 1] = (index[1] & 255) as u8;
            y.qh[ib] = ((index[0] >> 8) | ((index[1] >> 8) << 4)) as u8;
            scales[ib] = scale;
            shifts[ib] = best_k;
            max_scale = cmax(max_scale, scale);
        }
        if max_scale == 0.0 {
            y.scales = [0; 8];
            continue;
        }
        let mut d = max_scale / 15.0;
        let id = 1.0 / d;
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for ib in 0..QK_K / BS {
            let l = scale_code(id, scales[ib], 7);
            sc[ib / 4] |= (l as u16) << (3 * (ib % 4));
            y.qh[ib] |= MASKS[shifts[ib] as usize];
            let xb = &xbl[BS * ib..BS * ib + BS];
            let mut weight = [0.0f32; BS];
            weights_of(ib, &mut weight);
            for k in 0..2 {
                let xx = pick(shifts[ib], k);
                let g = usize::from(y.qs[2 * ib + k])
                    + ((usize::from(y.qh[ib]) << (8 - 4 * k)) & 0x700);
                let pg = &lat.points[g];
                for j in 0..8 {
                    let w = weight[8 * k + j];
                    let q = xx[((pg[j] - 1) / 2) as usize] * (2 * l + 1) as f32;
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
        }
        if sumq2 > 0.0 {
            d = sumqx / sumq2;
        }
        let s = half::f16::from_f32(d * 1.1125).to_bits();
        sc[0] |= (s & 0x000f) << 12;
        sc[1] |= (s & 0x00f0) << 8;
        sc[2] |= (s & 0x0f00) << 4;
        sc[3] |= s & 0xf000;
        for (o, v) in y.scales.chunks_exact_mut(2).zip(sc) {
            o.copy_from_slice(&v.to_le_bytes());
        }
    }
}
