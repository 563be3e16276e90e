//! `hawser keygen --out FILE`: writes a fresh node identity (an ed25519 key file, mode 0600 on
//! Unix, readable by `hawser node --identity FILE`) and prints its PeerId, the name peers pin
//! with `--peer ID=ADDR#PEERID`. An existing file is never overwritten.

use std::path::PathBuf;

use anyhow::Context;
use hawser_net::session::Identity;

/// Arguments of `hawser keygen`.
#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the key file (it must not exist yet).
    #[arg(long)]
    pub out: PathBuf,
}

/// Generates the identity, writes it, prints its PeerId.
///
/// # Errors
/// The file exists or cannot be written, or the OS random source failed.
pub fn run(args: &KeygenArgs) -> anyhow::Result<()> {
    let identity = Identity::generate().context("generating an identity")?;
    identity
        .save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
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
        let args = KeygenArgs { out: out.clone() };
        run(&args).unwrap();
        let loaded = Identity::load(&out).unwrap();
        assert!(run(&args).is_err(), "an existing file is not overwritten");
        assert_eq!(Identity::load(&out).unwrap().peer_id(), loaded.peer_id());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
