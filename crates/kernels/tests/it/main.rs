//! The kernels crate's one integration-test binary.

mod pool;
