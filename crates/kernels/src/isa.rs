//! The instruction-set level kernels run at, detected once per process.
//!
//! `HEARTH_ISA=generic|avx2|avx512` lowers the level (never raises it above what the CPU has),
//! for tests and for comparisons; `avx512-novnni` also turns VNNI off, so a CPU with it runs
//! the kernels of one without (Skylake-X's set) — for every level, differential tests included. Kernels that want to test every level take an [`Isa`]
//! explicitly; everything else calls [`Isa::detected`].
//!
//! # Dispatch
//! Every kernel family is chosen from an [`Isa`] the same way, once: one function per family
//! matches on `Isa::dispatch` — the level lowered to what this CPU runs, as a crate-private
//! `Dispatch` — and returns function pointers (or a `&'static` table of them), which the caller
//! keeps: `ops::Ops` holds its table for its lifetime, a `matmul::Matrix` its row, packed and
//! tile kernels and its activation quantizer. No kernel call re-detects or re-matches; a hot
//! path pays one indirect call. The families' resolvers are `Ops::new` (`ops`) and
//! `rows_kernel`, `packed_kernel`, `tile_kernel`, their `_ggml` forms and
//! `quantize_acts_kernel` (`dot`).

use std::sync::OnceLock;

/// A SIMD level, ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable scalar code, the reference for every other level.
    Generic,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL/DQ (plus VNNI when [`Isa::has_vnni`] says so), on top of AVX2.
    Avx512,
}

impl Isa {
    /// The best level this CPU supports, lowered by `HEARTH_ISA` when set; detected once.
    pub fn detected() -> Isa {
        static LEVEL: OnceLock<Isa> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let best = Isa::best_supported();
            match std::env::var("HEARTH_ISA")
                .ok()
                .as_deref()
                .and_then(Isa::from_name)
            {
                Some(forced) => forced.min(best),
                None => best,
            }
        })
    }

    /// The best level the CPU supports, ignoring `HEARTH_ISA`.
    pub fn best_supported() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && Isa::avx2_present()
            {
                return Isa::Avx512;
            }
            if Isa::avx2_present() {
                return Isa::Avx2;
            }
        }
        Isa::Generic
    }

    #[cfg(target_arch = "x86_64")]
    fn avx2_present() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }

    /// Every level this CPU can run, lowest first (for differential tests).
    pub fn all_supported() -> Vec<Isa> {
        [Isa::Generic, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&i| i <= Isa::best_supported())
            .collect()
    }

    /// Whether AVX-512 VNNI (`vpdpbusd`) is available to the `Avx512` level (never with
    /// `HEARTH_ISA=avx512-novnni`).
    pub fn has_vnni() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            static OFF: OnceLock<bool> = OnceLock::new();
            let off = *OFF.get_or_init(|| {
                std::env::var("HEARTH_ISA")
                    .is_ok_and(|v| v.trim().eq_ignore_ascii_case("avx512-novnni"))
            });
            !off && std::arch::is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Whether AVX512-BF16 (`VDPBF16PS`) is available to the `Avx512` level.
    pub(crate) fn has_bf16() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Parses `generic`, `avx2`, `avx512` or `avx512-novnni`.
    pub fn from_name(name: &str) -> Option<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "generic" | "scalar" => Some(Isa::Generic),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx-512" | "avx512-novnni" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// The kernels this level runs on this CPU: the one match every kernel resolver makes (see
    /// the module docs). The level is first lowered to [`Isa::best_supported`], so a kernel
    /// taken from the arm of a variant has every CPU feature it was compiled for.
    pub(crate) fn dispatch(self) -> Dispatch {
        match self.min(Isa::best_supported()) {
            Isa::Generic => Dispatch::Generic,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Dispatch::Avx2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if Isa::has_vnni() => Dispatch::Avx512Vnni,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Dispatch::Avx512,
            #[cfg(not(target_arch = "x86_64"))]
            _ => Dispatch::Generic,
        }
    }

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// The kernel set an [`Isa`] selects on this CPU ([`Isa::dispatch`]): what every kernel
/// resolver matches on.
///
/// **The one safety argument of ISA dispatch.** The SIMD kernels are `#[target_feature]`
/// functions: calling one is sound only on a CPU with its features. A `Dispatch` exists only for
/// a level this CPU has (`Isa::dispatch` lowers to [`Isa::best_supported`] and checks VNNI), and
/// each resolver's arm for a variant names only kernels compiled for that variant's features
/// (or a lower level's) — or, for an optional extension, checks it in the arm ([`Isa::has_bf16`])
/// — so every function pointer a resolver returns may be called here. The
/// `// SAFETY:` comments on kernel calls cite this as "resolved through `Isa::dispatch`" and add
/// only what is particular to the call (pointer bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dispatch {
    /// The scalar kernels.
    Generic,
    /// AVX2 + FMA + F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 F/BW/VL/DQ without VNNI (Skylake-X): 512-bit float and elementwise kernels; the
    /// 8-bit dot products run the AVX2 ones.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX-512 F/BW/VL/DQ + VNNI: every 512-bit kernel, and the 256-bit ones built for VNNI.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}
