//! The engine's one integration-test binary; each module tests one part.

mod chat_template_fixtures;
mod chat_template_models;
mod chat_template_sandbox;
mod chat_template_semantics;
