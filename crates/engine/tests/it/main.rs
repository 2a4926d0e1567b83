//! The engine crate's one integration-test binary.

mod model_reference;
mod hf_reference;
