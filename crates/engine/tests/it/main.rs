//! The engine's one integration-test binary; each module tests one part.

mod chat_template_fixtures;
