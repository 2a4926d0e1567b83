//! One module per subcommand, each with its clap `Args` and a `run(args) -> anyhow::Result<()>`.

pub mod inspect;
pub mod template;
pub mod tokenize;
