//! `presage profiles`: what the store knows, by what the code is. Parses, wires, prints.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use presage_core::WorkloadKey;
use presage_engine::Profile;
use presage_store::{AdminStore, StoreUrl};

/// Where the store is.
#[derive(Debug, ClapArgs)]
pub(crate) struct StoreArgs {
    /// The data directory (the store is `DIR/presage.db`) [default: /var/lib/presage as
    /// root, else the user's data directory].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The store: `sqlite:PATH` or `postgres://…` (overrides `--data-dir`).
    #[arg(long)]
    store: Option<String>,
}

impl StoreArgs {
    fn url(&self) -> Result<StoreUrl> {
        match &self.store {
            Some(text) => Ok(StoreUrl::parse(text).context("--store")?),
            None => Ok(StoreUrl::in_data_dir(
                &self
                    .data_dir
                    .clone()
                    .unwrap_or_else(presage_agent::default_data_dir),
            )),
        }
    }
}

/// List, show, export, import and remove stored profiles.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// One line per profile: key, version, samples, last update, model.
    Ls(StoreArgs),
    /// One profile as JSON. KEY is `CODE_ID@VERSION/INPUT_HASH/USER` (`-` for empty), as
    /// `ls` prints it.
    Show {
        /// The profile's key.
        key: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Profiles as a JSON array (all, or those named), to stdout or `--out`.
    Export {
        /// Keys to export (all when none).
        keys: Vec<String>,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Profiles from a JSON array written by `export`; all or nothing.
    Import {
        /// The file.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Merges the profiles of export files into the store: a key already stored merges
    /// with the incoming profile (sample counts add, models merge by their family's
    /// rule), a new key is added. All files are read and merged before anything is
    /// written.
    Merge {
        /// Export files (`presage profiles export` from other hosts).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Rows per table (profiles, executions, samples by resolution, fingerprints,
    /// decisions) as JSON.
    Stats(StoreArgs),
    /// The recorded runs of a code id, oldest first, one JSON object per line: start,
    /// end, exit status, peaks, totals, the prior it started from and its error.
    Runs {
        /// The code id (as `ls` prints it, before the `@`).
        code_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Deletes a profile.
    Rm {
        /// The profile's key.
        key: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The existing store `args` names (an SQLite file that is not there is an error, not a
/// new empty store: a mistyped path must not look like "no profiles").
pub(crate) fn open(args: &StoreArgs) -> Result<Box<dyn AdminStore>> {
    let url = args.url()?;
    if let StoreUrl::Sqlite(path) = &url
        && !path.exists()
    {
        bail!("no profile store at {}", path.display());
    }
    Ok(presage_store::open(&url)?)
}

fn open_or_create(args: &StoreArgs) -> Result<Box<dyn AdminStore>> {
    Ok(presage_store::open(&args.url()?)?)
}

/// `CODE_ID@VERSION/INPUT_HASH/USER`, `-` for an empty part (the key's display form).
pub(crate) fn parse_key(text: &str) -> Result<WorkloadKey> {
    let bad = || format!("key {text:?} is not CODE_ID@VERSION/INPUT_HASH/USER");
    let mut parts = text.rsplitn(3, '/');
    let user = parts.next().with_context(bad)?;
    let input = parts.next().with_context(bad)?;
    let head = parts.next().with_context(bad)?;
    let (code, version) = head.rsplit_once('@').with_context(bad)?;
    let undash = |s: &str| {
        if s == "-" {
            String::new()
        } else {
            s.to_owned()
        }
    };
    Ok(WorkloadKey::new(
        code,
        undash(version),
        undash(input),
        undash(user),
    )?)
}

pub(crate) fn run(cmd: &Command) -> Result<()> {
    match cmd {
        Command::Ls(store) => {
            for p in open(store)?.profiles()? {
                println!(
                    "{}  v{}  {} samples  updated {} ms  {}",
                    p.key,
                    p.version,
                    p.samples,
                    p.updated_at.unix_ms(),
                    p.model.as_ref().map_or("-", |m| m.model.as_str())
                );
            }
        }
        Command::Show { key, store } => {
            let key = parse_key(key)?;
            let p = open(store)?
                .load(&key)?
                .with_context(|| format!("no profile for {key}"))?;
            println!("{}", serde_json::to_string_pretty(&p)?);
        }
        Command::Export { keys, out, store } => {
            let mut s = open(store)?;
            let profiles = if keys.is_empty() {
                s.profiles()?
            } else {
                let mut v = Vec::new();
                for k in keys {
                    let key = parse_key(k)?;
                    v.push(
                        s.load(&key)?
                            .with_context(|| format!("no profile for {key}"))?,
                    );
                }
                v
            };
            let text = serde_json::to_string_pretty(&profiles)?;
            match out {
                Some(path) => std::fs::write(path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => println!("{text}"),
            }
        }
        Command::Import { file, store } => {
            let profiles = read_import(file)?;
            let mut s = open_or_create(store)?;
            s.save(&profiles)?;
            eprintln!("imported {} profiles into {}", profiles.len(), s.describe());
        }
        Command::Merge { files, store } => {
            let mut incoming = Vec::new();
            for f in files {
                incoming.extend(read_import(f)?);
            }
            let mut s = open_or_create(store)?;
            let mut existing = Vec::new();
            for p in &incoming {
                if let Some(old) = s.load(&p.key)? {
                    existing.push(old);
                }
            }
            let merged_keys = existing.len();
            let out = presage_store::merge_into(existing, incoming)?;
            s.save(&out)?;
            eprintln!(
                "{} profiles written to {} ({merged_keys} merged with a stored one)",
                out.len(),
                s.describe()
            );
        }
        Command::Runs { code_id, store } => {
            for e in open(store)?.executions(code_id)? {
                println!("{}", serde_json::to_string(&e)?);
            }
        }
        Command::Stats(store) => {
            let counts = open(store)?.counts()?;
            println!("{}", serde_json::to_string_pretty(&counts)?);
        }
        Command::Rm { key, store } => {
            let key = parse_key(key)?;
            if !open(store)?.remove(&key)? {
                bail!("no profile for {key}");
            }
        }
    }
    Ok(())
}

/// The profiles of an export file, all checked before any is written.
fn read_import(file: &Path) -> Result<Vec<Profile>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: not a profile export: {e}",
            file.display(),
            e.line(),
            e.column()
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_display_form() {
        let k = WorkloadKey::new("abc@2", "2", "", "0").unwrap();
        assert_eq!(parse_key(&k.to_string()).unwrap(), k);
        assert!(parse_key("nope").is_err());
    }
}
