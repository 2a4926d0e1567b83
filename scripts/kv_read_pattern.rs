//! How fast a decode step of 8 sequences can read its keys and values in each order the
//! attention kernels could read them (docs/benchmarks.md, "The read pattern"): 30 layers of
//! SmolLM2's cache shape (3 kv heads of 64, 8 × 256 cells, K and V), one thread, nothing
//! computed but a checksum. Modes: 0 sequential; 1 per sequence and head, 128 of every 384
//! bytes (llama.cpp's layout), cells scattered one per 8; 2 per sequence, whole cells,
//! scattered; 3 the values in the 16-lane order, scattered; 4–6 as 1, 3 and K-then-V with each
//! sequence's cells contiguous; 7–8 as 4–5 with the rows head-major (hearth's store).
//! Not part of the build:
//!
//!   rustc -O -C target-cpu=native scripts/kv_read_pattern.rs -o /tmp/kv_read_pattern
//!   /tmp/kv_read_pattern
use std::time::Instant;
fn main() {
    let layers = 30; let b = 8; let np = 128; let ng = 128; let heads = 3; let hd = 64;
    let cells_n = b * (np + ng);
    let per = cells_n * heads * hd; // f16 count per K
    let data: Vec<Vec<u16>> = (0..layers * 2).map(|l| (0..per).map(|i| (i as u16).wrapping_mul(l as u16 + 3)).collect()).collect();
    let mut maps = vec![];
    for t in 0..b { let mut m = vec![]; m.extend((t*np..(t+1)*np).map(|c| c)); m.extend((0..ng).map(|i| b*np + i*b + t)); maps.push(m); }
    let mut sink = 0u64;
    let cmaps: Vec<Vec<usize>> = (0..b).map(|t| (t*(np+ng)..(t+1)*(np+ng)).collect()).collect();
    for mode in 0..9 {
      let mut best = f64::MAX;
      for _ in 0..20 {
        let t0 = Instant::now();
        for l in 0..layers {
          let (k, v) = (&data[2*l], &data[2*l+1]);
          match mode {
            0 => { for x in [k, v] { for c in x.chunks_exact(32) { sink = sink.wrapping_add(c[0] as u64 ^ c[31] as u64); } } }
            1 => { for t in 0..b { for h in 0..heads { for x in [k, v] { for &c in &maps[t] { let r = &x[(c*heads + h)*hd..][..hd]; sink = sink.wrapping_add(r[0] as u64 ^ r[32] as u64); } } } } }
            2 => { for t in 0..b { for x in [k, v] { for &c in &maps[t] { let r = &x[c*heads*hd..][..hd*heads]; for q in r.chunks_exact(32) { sink = sink.wrapping_add(q[0] as u64);} } } } }
            4 => { for t in 0..b { for h in 0..heads { for x in [k, v] { for &c in &cmaps[t] { let r = &x[(c*heads + h)*hd..][..hd]; sink = sink.wrapping_add(r[0] as u64 ^ r[32] as u64); } } } } }
            5 => { for t in 0..b { for h in 0..heads { for lane in 0..16 { let mut j = lane; while j < cmaps[t].len() { let c = cmaps[t][j]; let r = &v[(c*heads + h)*hd..][..hd]; sink = sink.wrapping_add(r[0] as u64 ^ r[32] as u64); j += 16; } } } } }
            6 => { for t in 0..b { for h in 0..heads { let x = k; for &c in &cmaps[t] { let r = &x[(c*heads + h)*hd..][..hd]; sink = sink.wrapping_add(r[0] as u64 ^ r[32] as u64); }  for lane in 0..16 { let mut j = lane; while j < cmaps[t].len() { let c = cmaps[t][j]; let r = &v[(c*heads + h)*hd..][..hd]; sink = sink.wrapping_add(r[0] as u64 ^ r[32] as u64); j += 16; } } } } }
            7 => { for t in 0..b { for h in 0..heads { for x in [k, v] { for &c in &cmaps[t] { let r = &x[(h*cells_n + c)*hd..][..hd]; sink = sink.wrapping_add(r[0] as u64 ^ r[32] as u64); } } } } }
            8 => { for t in 0..b { for h in 0..heads { for lane in 0..16 { let mut j = lane; while j < cmaps[t].len() { let c = cmaps[t][j]; let r = &v[(h*cells_n + c)*hd..][..hd]; sink = sink.wrapping_add(r[0] as u64 ^ r[32] as u64); j += 16; } } } } }
            _ => { // lane-strided V
                   for t in 0..b { for h in 0..heads { for lane in 0..16 { let mut j = lane; while j < maps[t].len() { let c = maps[t][j]; let r = &v[(c*heads + h)*hd..][..hd]; sink = sink.wrapping_add(r[0] as u64 ^ r[32] as u64); j += 16; } } } } }
          }
        }
        best = best.min(t0.elapsed().as_secs_f64());
      }
      let bytes = (layers * 2 * per * 2) as f64 * if mode == 3 || mode == 5 || mode == 8 { 0.5 } else { 1.0 };
      println!("mode {mode}: {:.3} ms, {:.1} GB/s", best*1e3, bytes/best/1e9);
    }
    println!("{sink}");
}
