//! `hearth rm REF`: remove a model from the Hugging Face cache — `org/repo` removes the whole
//! repository, `org/repo:QUANT` (or a file URL) only that model, and blobs nothing else uses.

#[derive(clap::Args, Debug)]
pub struct Args {
    /// org/repo (everything cached from it) or org/repo:QUANT
    pub reference: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = super::pull::hub_options(true);
    let r = hub::HubRef::parse(&args.reference)?;
    let removed = hub::remove(&r, &opts)?;
    for f in &removed.files {
        println!("removed {}/{f}", r.repo);
    }
    eprintln!("freed {}", super::list::human_size(removed.bytes));
    Ok(())
}
