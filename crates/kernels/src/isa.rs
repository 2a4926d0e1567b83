//! The instruction-set level kernels run at, detected once per process.
//!
//! `HEARTH_ISA=generic|avx2|avx512` lowers the level (never raises it above what the CPU has),
//! for tests and for comparisons. Kernels that want to test every level take an [`Isa`]
//! explicitly; everything else calls [`Isa::detected`].

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

    /// Whether AVX-512 VNNI (`vpdpbusd`) is available to the `Avx512` level.
    pub fn has_vnni() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Parses `generic`, `avx2` or `avx512`.
    pub fn from_name(name: &str) -> Option<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "generic" | "scalar" => Some(Isa::Generic),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx-512" => Some(Isa::Avx512),
            _ => None,
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
