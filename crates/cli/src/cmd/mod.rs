//! One module per subcommand, each with its clap `Args` and a `run(args) -> anyhow::Result<()>`.

pub mod batched_bench;
pub mod bench;
pub mod chat;
pub mod common;
pub mod convert;
pub mod imatrix;
pub mod inspect;
pub mod list;
pub mod perplexity;
pub mod pull;
pub mod quantize;
pub mod rm;
pub mod run;
pub mod serve;
pub mod template;
pub mod tokenize;
