//! Model references as users type them: `org/repo`, `org/repo:TAG`, `hf.co/org/repo[:TAG]` and
//! `https://huggingface.co/org/repo/resolve/REV/file.gguf`. Everything here is validated so that a
//! repository id, revision or file name can be used in a cache path without escaping it.

use crate::Error;

/// A model on the Hub: which repository, at which revision, and which file(s) in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubRef {
    /// `org/name`.
    pub repo: String,
    /// A branch, tag or commit (`main` unless the reference names one).
    pub revision: String,
    pub selector: Selector,
}

/// Which GGUF of a repository a reference asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// No tag: Q4_K_M, else Q8_0, else the first GGUF.
    Default,
    /// `:TAG`, a quant name such as `Q4_K_M` (case-insensitive).
    Tag(String),
    /// One file by its path in the repository (the URL form).
    File(String),
}

impl HubRef {
    /// Parses a Hub reference; a local path is not one (see [`crate::resolve_model`]).
    pub fn parse(reference: &str) -> Result<HubRef, Error> {
        let bad = |why: &str| Error::BadReference(format!("{reference:?}: {why}"));
        let s = reference.trim();
        if let Some(rest) = strip_prefix_ci(s, "https://").or_else(|| strip_prefix_ci(s, "http://"))
        {
            let rest = rest.split(['?', '#']).next().unwrap_or("");
            let (_host, path) = rest
                .split_once('/')
                .ok_or_else(|| bad("no repository in URL"))?;
            let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
            return match parts.as_slice() {
                [org, name] => Self::repo_and_tag(reference, &format!("{org}/{name}")),
                [org, name, "resolve" | "blob", rev, file @ ..] if !file.is_empty() => {
                    let repo = format!("{org}/{name}");
                    check_repo_id(&repo).map_err(|w| bad(&w))?;
                    check_revision(rev).map_err(|w| bad(&w))?;
                    let file = file.join("/");
                    check_file_path(&file)?;
                    Ok(HubRef {
                        repo,
                        revision: (*rev).to_string(),
                        selector: Selector::File(file),
                    })
                }
                _ => Err(bad("expected https://HOST/org/repo/resolve/REV/FILE")),
            };
        }
        let s = strip_prefix_ci(s, "hf.co/")
            .or_else(|| strip_prefix_ci(s, "huggingface.co/"))
            .unwrap_or(s);
        Self::repo_and_tag(reference, s)
    }

    fn repo_and_tag(reference: &str, s: &str) -> Result<HubRef, Error> {
        let bad = |why: &str| Error::BadReference(format!("{reference:?}: {why}"));
        let (repo, tag) = match s.split_once(':') {
            Some((repo, tag)) => (repo, Some(tag)),
            None => (s, None),
        };
        check_repo_id(repo).map_err(|w| bad(&w))?;
        let selector = match tag {
            None => Selector::Default,
            Some(tag) => {
                if tag.is_empty()
                    || tag.len() > 64
                    || !tag
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
                {
                    return Err(bad("a tag is a quant name such as Q4_K_M"));
                }
                Selector::Tag(tag.to_string())
            }
        };
        Ok(HubRef {
            repo: repo.to_string(),
            revision: "main".to_string(),
            selector,
        })
    }
}

impl std::fmt::Display for HubRef {
    /// The reference in a form [`HubRef::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.selector {
            Selector::Default => f.write_str(&self.repo),
            Selector::Tag(t) => write!(f, "{}:{t}", self.repo),
            Selector::File(p) => write!(
                f,
                "https://huggingface.co/{}/resolve/{}/{p}",
                self.repo, self.revision
            ),
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix))
    .then(|| &s[prefix.len()..])
}

/// huggingface_hub's `validate_repo_id`, for `org/name` (both parts required).
pub(crate) fn check_repo_id(repo: &str) -> Result<(), String> {
    let Some((org, name)) = repo.split_once('/') else {
        return Err("expected org/repo".into());
    };
    if repo.len() > 96 {
        return Err("repository id longer than 96 characters".into());
    }
    for part in [org, name] {
        let ok = !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            && !part.starts_with(['-', '.'])
            && !part.ends_with(['-', '.'])
            && !part.contains("--")
            && !part.contains("..");
        if !ok {
            return Err(format!("{part:?} is not a valid repository or owner name"));
        }
    }
    Ok(())
}

/// A branch or tag name usable as a file name under `refs/`, or a commit hash.
pub(crate) fn check_revision(rev: &str) -> Result<(), String> {
    let ok = !rev.is_empty()
        && rev.len() <= 128
        && rev
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && !rev.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!("{rev:?} is not a supported revision name"))
    }
}

/// A file path in a repository, as the Hub API or a user gives it: relative, `/`-separated, no
/// `.`/`..`/empty components, no backslash, no drive prefix, no control characters.
pub fn check_file_path(path: &str) -> Result<(), Error> {
    let unsafe_path = || Error::UnsafePath(path.to_string());
    if path.is_empty()
        || path.len() > 1024
        || path.starts_with('/')
        || path.contains('\\')
        || path.chars().any(char::is_control)
    {
        return Err(unsafe_path());
    }
    let b = path.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err(unsafe_path());
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(unsafe_path());
    }
    Ok(())
}

/// A git commit hash: 40 lowercase hex digits.
pub(crate) fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> (String, String, Selector) {
        let r = HubRef::parse(s).unwrap();
        (r.repo, r.revision, r.selector)
    }

    #[test]
    fn reference_forms() {
        let tag = |t: &str| Selector::Tag(t.into());
        assert_eq!(
            sel("org/repo"),
            ("org/repo".into(), "main".into(), Selector::Default)
        );
        assert_eq!(
            sel("bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M"),
            (
                "bartowski/Qwen2.5-0.5B-Instruct-GGUF".into(),
                "main".into(),
                tag("Q4_K_M")
            )
        );
        assert_eq!(
            sel("hf.co/org/repo:q8_0"),
            ("org/repo".into(), "main".into(), tag("q8_0"))
        );
        assert_eq!(
            sel("https://huggingface.co/org/repo/resolve/main/sub/m-Q4_0.gguf?download=true"),
            (
                "org/repo".into(),
                "main".into(),
                Selector::File("sub/m-Q4_0.gguf".into())
            )
        );
        assert_eq!(
            sel("https://huggingface.co/org/repo"),
            ("org/repo".into(), "main".into(), Selector::Default)
        );
    }

    #[test]
    fn display_parses_back() {
        for s in [
            "org/repo",
            "org/repo:Q4_K_M",
            "https://huggingface.co/org/repo/resolve/v1.0/dir/m-Q4_0.gguf",
        ] {
            let r = HubRef::parse(s).unwrap();
            assert_eq!(r.to_string(), s);
            assert_eq!(HubRef::parse(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn bad_references() {
        for s in [
            "repo",
            "a/b/c",
            "org/repo:",
            "org/re--po",
            "../x",
            "org/..",
            "org/repo:Q4 K",
            "https://huggingface.co/org/repo/resolve/main/../../etc/passwd",
            "https://huggingface.co/org/repo/resolve/main/a\\b.gguf",
            "https://huggingface.co/org/repo/resolve/../x.gguf",
        ] {
            assert!(HubRef::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn unsafe_file_paths() {
        for p in [
            "../x.gguf",
            "a/../../x.gguf",
            "/etc/passwd",
            "a\\b.gguf",
            "C:x.gguf",
            "c:/x.gguf",
            "a//b",
            "./a",
            "",
            "a\0b",
        ] {
            assert!(check_file_path(p).is_err(), "{p:?}");
        }
        for p in ["a.gguf", "dir/a-Q4_K_M.gguf", "a..b.gguf"] {
            check_file_path(p).unwrap();
        }
    }
}
