//! The CLI's one integration-test binary; each module covers one subcommand.

mod tokenize;
