//! Picking the GGUF a reference means: quant names read from file names, split models grouped
//! into one choice, and the tag (or the default order Q4_K_M, Q8_0, first GGUF) applied.

use crate::Error;

/// One model in a repository: a single GGUF, or every shard of a split one (in order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Paths in the repository; the first shard first.
    pub files: Vec<String>,
    /// The quant name in the file name, upper-case (`Q4_K_M`), if it has one.
    pub quant: Option<String>,
}

impl Group {
    fn label(&self) -> String {
        let first = &self.files[0];
        if self.files.len() > 1 {
            format!("{first} ({} parts)", self.files.len())
        } else {
            first.clone()
        }
    }
}

/// The quant name in a GGUF file name (`Qwen2.5-0.5B-Instruct-Q4_K_M.gguf` → `Q4_K_M`), upper-case.
pub fn quant_of(path: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = strip_gguf(name).unwrap_or(name);
    let stem = split_suffix(stem).map_or(stem, |(prefix, _, _)| prefix);
    let upper = stem.to_ascii_uppercase();
    // The last `-`/`.`-separated segment holding a quant; within it, the quant starts at the
    // beginning or after `_` (`model_q4_k_m`) and runs to the segment's end.
    upper.rsplit(['-', '.']).find_map(|seg| {
        let mut starts = std::iter::once(0).chain(seg.match_indices('_').map(|(i, _)| i + 1));
        starts
            .find(|&i| is_quant_start(&seg[i..]))
            .map(|i| seg[i..].to_string())
    })
}

fn is_quant_start(s: &str) -> bool {
    let b = s.as_bytes();
    let digit_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let ends_at = |i: usize| b.len() == i || b[i] == b'_';
    (b.first() == Some(&b'Q') && digit_at(1))
        || ((s.starts_with("IQ") || s.starts_with("TQ")) && digit_at(2))
        || ["F16", "F32", "BF16", "MXFP4"]
            .iter()
            .any(|q| s.starts_with(q) && ends_at(q.len()))
}

fn strip_gguf(name: &str) -> Option<&str> {
    let n = name.len();
    (n > 5 && name.is_char_boundary(n - 5) && name[n - 5..].eq_ignore_ascii_case(".gguf"))
        .then(|| &name[..n - 5])
}

/// The part number and part count of a split GGUF's file name (`m-00001-of-00003.gguf` →
/// `(1, 3)`), llama.cpp's split naming.
pub fn split_part(path: &str) -> Option<(u32, u32)> {
    let name = path.rsplit('/').next().unwrap_or(path);
    split_suffix(strip_gguf(name)?).map(|(_, i, n)| (i, n))
}

/// `model-00002-of-00003` → (`model`, 2, 3): llama.cpp's split naming.
fn split_suffix(stem: &str) -> Option<(&str, u32, u32)> {
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, index) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(count) {
        return None;
    }
    let (index, count) = (index.parse().ok()?, count.parse().ok()?);
    (index >= 1 && index <= count).then_some((prefix, index, count))
}

/// Whether a path is a model GGUF (not a multimodal projector).
pub fn is_model_gguf(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    strip_gguf(name).is_some() && !name.to_ascii_lowercase().contains("mmproj")
}

/// Groups the model GGUFs among `paths`: split shards together when every shard is there.
pub fn groups<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<Group> {
    let mut singles = Vec::new();
    let mut splits: std::collections::BTreeMap<(String, u32), Vec<(u32, String)>> =
        Default::default();
    for p in paths.into_iter().filter(|p| is_model_gguf(p)) {
        let stem = &p[..p.len() - 5];
        match split_suffix(stem) {
            Some((prefix, index, count)) => splits
                .entry((prefix.to_string(), count))
                .or_default()
                .push((index, p.to_string())),
            None => singles.push(p.to_string()),
        }
    }
    let mut out: Vec<Group> = singles
        .into_iter()
        .map(|p| Group {
            quant: quant_of(&p),
            files: vec![p],
        })
        .collect();
    for ((_, count), mut shards) in splits {
        shards.sort();
        shards.dedup_by_key(|s| s.0);
        // A split with a shard missing cannot be loaded: leave it out of the choice.
        if shards.len() as u32 == count {
            let files: Vec<String> = shards.into_iter().map(|s| s.1).collect();
            out.push(Group {
                quant: quant_of(&files[0]),
                files,
            });
        }
    }
    out.sort_by(|a, b| a.files[0].cmp(&b.files[0]));
    out
}

/// The group a tag (or the default order) selects in `repo`.
pub fn select(repo: &str, groups: &[Group], tag: Option<&str>) -> Result<Group, Error> {
    if groups.is_empty() {
        return Err(Error::NoMatch(format!("{repo} has no GGUF model file")));
    }
    let by_quant = |q: &str| -> Vec<&Group> {
        groups
            .iter()
            .filter(|g| {
                g.quant
                    .as_deref()
                    .is_some_and(|gq| gq.eq_ignore_ascii_case(q))
            })
            .collect()
    };
    let one = |found: Vec<&Group>, what: &str| -> Result<Option<Group>, Error> {
        match found.as_slice() {
            [] => Ok(None),
            [g] => Ok(Some((*g).clone())),
            many => Err(Error::NoMatch(format!(
                "{repo}: {what} matches several models ({}); name one with a URL \
                 (https://huggingface.co/{repo}/resolve/main/FILE)",
                many.iter()
                    .map(|g| g.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    };
    match tag {
        Some(tag) => {
            let mut found = by_quant(tag);
            if found.is_empty() {
                let t = tag.to_ascii_uppercase();
                found = groups
                    .iter()
                    .filter(|g| contains_bounded(&g.files[0].to_ascii_uppercase(), &t))
                    .collect();
            }
            one(found, &format!("tag {tag}"))?.ok_or_else(|| {
                Error::NoMatch(format!(
                    "{repo} has no GGUF for tag {tag}; available: {}",
                    available(groups)
                ))
            })
        }
        None => {
            for q in ["Q4_K_M", "Q8_0"] {
                if let Some(g) = one(by_quant(q), q)? {
                    return Ok(g);
                }
            }
            Ok(groups[0].clone())
        }
    }
}

/// The quants (or file names, for GGUFs without one) a repository offers, for error messages.
pub fn available(groups: &[Group]) -> String {
    let mut names: Vec<String> = groups
        .iter()
        .map(|g| g.quant.clone().unwrap_or_else(|| g.label()))
        .collect();
    names.sort();
    names.dedup();
    names.join(", ")
}

/// `needle` in the file-name part of `hay` with no letter or digit on its left and `-`, `.` or the
/// end on its right (so `Q4_K` does not match `Q4_K_M`, nor `Q4_XS` match `IQ4_XS`).
fn contains_bounded(hay: &str, needle: &str) -> bool {
    let name = hay.rsplit('/').next().unwrap_or(hay);
    name.match_indices(needle).any(|(i, _)| {
        let before_ok = name[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        let after_ok = name[i + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| c == '-' || c == '.');
        before_ok && after_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quant_names_from_file_names() {
        for (name, q) in [
            ("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", Some("Q4_K_M")),
            ("gemma-3-270m-q4_k_m.gguf", Some("Q4_K_M")),
            ("SmolLM2-135M-Instruct.Q4_1.gguf", Some("Q4_1")),
            ("model_iq4_xs.gguf", Some("IQ4_XS")),
            ("Llama-3-8B-BF16.gguf", Some("BF16")),
            ("m-F16-00001-of-00002.gguf", Some("F16")),
            ("dir/Model-UD-Q4_K_XL.gguf", Some("Q4_K_XL")),
            ("Qwen3-4B.gguf", None),
            ("notes.txt", None),
        ] {
            assert_eq!(quant_of(name).as_deref(), q, "{name}");
        }
    }

    fn g(files: &[&str]) -> Vec<Group> {
        groups(files.iter().copied())
    }

    #[test]
    fn default_order_and_tags() {
        let gs = g(&[
            "m-Q8_0.gguf",
            "m-Q4_K_M.gguf",
            "m-IQ4_XS.gguf",
            "m-Q4_K_S.gguf",
            "README.md",
            "mmproj-m-f16.gguf",
        ]);
        assert_eq!(gs.len(), 4);
        let pick = |t| select("o/r", &gs, t).map(|g| g.files[0].clone());
        assert_eq!(pick(None).unwrap(), "m-Q4_K_M.gguf");
        assert_eq!(pick(Some("q8_0")).unwrap(), "m-Q8_0.gguf");
        assert_eq!(pick(Some("IQ4_XS")).unwrap(), "m-IQ4_XS.gguf");
        let e = pick(Some("Q4_K")).unwrap_err().to_string();
        assert!(e.contains("available: IQ4_XS, Q4_K_M, Q4_K_S, Q8_0"), "{e}");
        let gs = g(&["m-Q8_0.gguf", "m-F16.gguf"]);
        assert_eq!(select("o/r", &gs, None).unwrap().files, ["m-Q8_0.gguf"]);
        let gs = g(&["b.gguf", "a-F16.gguf"]);
        assert_eq!(select("o/r", &gs, None).unwrap().files, ["a-F16.gguf"]);
    }

    #[test]
    fn split_models_are_one_choice() {
        let gs = g(&[
            "big-Q4_K_M-00002-of-00003.gguf",
            "big-Q4_K_M-00001-of-00003.gguf",
            "big-Q4_K_M-00003-of-00003.gguf",
            "half-Q8_0-00001-of-00002.gguf",
        ]);
        assert_eq!(gs.len(), 1, "an incomplete split is not offered");
        assert_eq!(split_part("d/big-Q4_K_M-00002-of-00003.gguf"), Some((2, 3)));
        assert_eq!(split_part("big-Q4_K_M.gguf"), None);
        assert_eq!(gs[0].quant.as_deref(), Some("Q4_K_M"));
        assert_eq!(
            gs[0].files,
            [
                "big-Q4_K_M-00001-of-00003.gguf",
                "big-Q4_K_M-00002-of-00003.gguf",
                "big-Q4_K_M-00003-of-00003.gguf"
            ]
        );
    }

    #[test]
    fn ambiguity_is_an_error() {
        let gs = g(&["a-Q4_K_M.gguf", "b-Q4_K_M.gguf"]);
        let e = select("o/r", &gs, None).unwrap_err().to_string();
        assert!(e.contains("a-Q4_K_M.gguf, b-Q4_K_M.gguf"), "{e}");
        assert!(select("o/r", &[], None).is_err());
    }
}
