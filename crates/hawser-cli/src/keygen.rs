//! `hawser keygen --out FILE`: writes a fresh node identity (an ed25519 key file, mode 0600 on
//! Unix, readable by `hawser node --identity FILE`) and prints its PeerId, the name peers pin
//! with `--peer ID=ADDR#PEERID`. An existing file is never overwritten.
//! `hawser keygen --show FILE` prints the PeerId of an existing key file.

use std::path::PathBuf;

use anyhow::Context;
use hawser_net::session::Identity;

/// Arguments of `hawser keygen`.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct KeygenArgs {
    /// Where to write a new key file (it must not exist yet).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the PeerId of this existing key file instead.
    #[arg(long, value_name = "FILE")]
    pub show: Option<PathBuf>,
}

/// Generates an identity, writes it and prints its PeerId; or prints the PeerId of the key
/// file given with `--show`.
///
/// # Errors
/// The file exists or cannot be written, or the OS random source failed; with `--show`, the
/// file cannot be read or is not a key file.
pub fn run(args: &KeygenArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.show {
        let identity = Identity::load(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        println!("{}", identity.peer_id());
        return Ok(());
    }
    let Some(out) = &args.out else {
        anyhow::bail!("give --out FILE or --show FILE");
    };
    let identity = Identity::generate().context("cannot generate an identity")?;
    identity
        .save(out)
        .with_context(|| format!("cannot write key file {}", out.display()))?;
    println!("{}", identity.peer_id());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_loadable_identity_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("hawser-keygen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("node.key");
        let _ = std::fs::remove_file(&out);
        let args = KeygenArgs {
            out: Some(out.clone()),
            show: None,
        };
        run(&args).unwrap();
        let loaded = Identity::load(&out).unwrap();
        assert!(run(&args).is_err(), "an existing file is not overwritten");
        let show = KeygenArgs {
            out: None,
            show: Some(out.clone()),
        };
        run(&show).unwrap();
        assert_eq!(Identity::load(&out).unwrap().peer_id(), loaded.peer_id());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
