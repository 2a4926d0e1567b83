//! `hearth list`: the GGUF models in the Hugging Face cache — repository, file, quant, size and
//! when each was last used.

use std::time::SystemTime;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    let opts = super::pull::hub_options(false);
    let files = hub::list(&opts)?;
    if files.is_empty() {
        eprintln!("no models in {}", opts.cache_dir.display());
        return Ok(());
    }
    let now = SystemTime::now();
    let rows: Vec<[String; 5]> = files
        .iter()
        .map(|f| {
            [
                f.repo.clone(),
                f.file.clone(),
                f.quant.clone().unwrap_or_else(|| "-".into()),
                human_size(f.size),
                f.last_used.map_or_else(
                    || "-".into(),
                    |t| ago(now.duration_since(t).unwrap_or_default().as_secs()),
                ),
            ]
        })
        .collect();
    let header = ["REPO", "FILE", "QUANT", "SIZE", "LAST USED"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(())
}

/// Bytes in decimal units, as Ollama and the Hub show them (`98 MB`, `4.9 GB`).
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 || v >= 10.0 {
        format!("{v:.0} {}", units[u])
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn ago(secs: u64) -> String {
    let (n, unit) = match secs {
        0..60 => return "just now".into(),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        86400..2_592_000 => (secs / 86400, "day"),
        2_592_000..31_536_000 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(98_300_000), "98 MB");
        assert_eq!(human_size(4_920_000_000), "4.9 GB");
        assert_eq!(ago(5), "just now");
        assert_eq!(ago(61), "1 minute ago");
        assert_eq!(ago(3 * 86400 + 5), "3 days ago");
    }
}
